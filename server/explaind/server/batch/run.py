"""A batch job's rows, run in the build process (the local runner): the input
counted, then read a batch at a time, answered by the data plane
(explainer.py) and written as parts into the staging folder, in data set
order. Nothing holds more than one batch of rows, so memory stays flat
whatever the row count."""
from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Iterator

from ..errors import InvalidArgument
from ..security import uris
from .explainer import RowExplainer, error_line
from .instances import Prepared
from .layout import ERRORS, RESULTS, staged_folder
from .rows import InputFiles, Row, RowError
from .tally import Tally
from .task import BatchOutput, BatchTask
from .writer import PartWriter

log = logging.getLogger(__name__)


def run_batch(task: BatchTask, progress) -> BatchOutput:
    """`progress.rows(done, failed, total)` after each batch (it may raise to stop the job)."""
    uris.install(uris.UriPolicy(task.options.allowed_uri_prefixes))
    files = InputFiles(task.paths, task.instances_format, task.options.file_max_bytes)
    total = files.count()
    if total == 0:
        raise InvalidArgument("the input has no rows", field="input_config")
    tally = Tally(total, task.options.max_failed_fraction)
    progress.rows(0, 0, total)
    explainer = RowExplainer(task)
    try:
        explainer.load()
        with PartWriter(staged_folder(task.staging, RESULTS), task.options.rows_per_file) as results, \
                PartWriter(staged_folder(task.staging, ERRORS), task.options.rows_per_file) as errors:
            for batch in batches(files.rows(), task.options.batch_size):
                answer_batch(batch, task, explainer, results, errors, tally)
                progress.rows(tally.done, tally.failed, total)
    finally:
        explainer.close()
    log.info("batch rows done", extra={"operation": task.operation, "rows": tally.done, "failed": tally.failed})
    return tally.output()


def answer_batch(batch: list[Row], task: BatchTask, explainer: RowExplainer, results: PartWriter,
                 errors: PartWriter, tally: Tally) -> None:
    """One batch: its rows prepared, answered, and written (results and errors apart, each in
    data set order); the tally counts them (and raises once too many failed)."""
    outcomes: list[tuple[Row, Prepared | None, bytes | RowError]] = []
    ready: list[tuple[int, Row, Prepared]] = []
    for row in batch:
        prepared = task.shape.prepare(row) if row.error is None else row.error
        if isinstance(prepared, RowError):
            outcomes.append((row, None, prepared))
        else:
            ready.append((len(outcomes), row, prepared))
            outcomes.append((row, prepared, b""))
    answers = explainer.answer([prepared for _, _, prepared in ready]) if ready else []
    for (slot, row, prepared), answer in zip(ready, answers):
        if isinstance(answer, RowError):
            answer = dataclasses.replace(answer, message=f"{row.where}: {answer.message}")
        outcomes[slot] = (row, prepared, answer)
    failed = []
    for row, prepared, answer in outcomes:
        if isinstance(answer, RowError):
            shown_as, shown = (prepared.shown_as, prepared.shown) if prepared is not None else ("instance", row.value)
            errors.write(row.position, error_line(shown_as, shown, answer))
            failed.append((answer.code.value[0], answer.message))
        else:
            results.write(row.position, answer)
    tally.add(len(outcomes) - len(failed), failed)


def batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while True:
        batch = list(itertools.islice(rows, size))
        if not batch:
            return
        yield batch
