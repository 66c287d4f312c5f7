"""A job's output: Vertex's folder and file names, parts written in rows of at
most rows_per_file, published in data set order under their final names only
when the job completes (a local folder appears whole), removed otherwise; the
failure rule and the kinds of row errors."""
from __future__ import annotations

import datetime
import os

import pytest

from explaind.server.batch.layout import ERRORS, RESULTS, JobOutput, file_name, job_folder_name
from explaind.server.batch.tally import MAX_KINDS, Tally, TooManyFailures
from explaind.server.batch.writer import PartWriter


def test_names_are_vertex_s():
    when = datetime.datetime(2025, 6, 13, 6, 23, 35, 274_900, tzinfo=datetime.timezone.utc)
    assert job_folder_name("long_dataset", when) == "prediction-long_dataset-2025_06_13T06_23_35_274Z"
    assert job_folder_name("my model/../x", when).startswith("prediction-my_model_.._x-")
    assert job_folder_name("", when).startswith("prediction-model-")
    assert file_name(True, False, 0, 2) == "explanation.results-00000-of-00002"
    assert file_name(True, True, 3, 12) == "explanation.errors_stats-00003-of-00012"
    assert file_name(False, False, 0, 1) == "prediction.results-00000-of-00001"


def _write(output: JobOutput, kind: str, positions: list[int], rows_per_file: int) -> None:
    with PartWriter(output.staged(kind), rows_per_file) as writer:
        for p in positions:
            writer.write(p, f'{{"row": {p}}}'.encode())


def test_parts_publish_in_data_set_order_under_final_names(tmp_path):
    output = JobOutput(str(tmp_path / "out"), "job1", "prediction-m-2025_01_01T00_00_00_000Z")
    # Two writers (as two Ray actors would): parts named by first row sort in data set order.
    _write(output, RESULTS, [5, 6, 7, 8, 9], rows_per_file=2)
    _write(output, RESULTS, [0, 1, 2], rows_per_file=2)
    _write(output, ERRORS, [3, 4], rows_per_file=10)
    assert not os.path.exists(output.folder)
    results, errors = output.publish(explained=True)
    assert results == [f"explanation.results-{i:05d}-of-00005" for i in range(5)]
    assert errors == ["explanation.errors_stats-00000-of-00001"]
    lines = [line for name in results for line in open(os.path.join(output.folder, name)).read().splitlines()]
    assert lines == [f'{{"row": {p}}}' for p in (0, 1, 2, 5, 6, 7, 8, 9)]
    assert sorted(os.listdir(output.folder)) == sorted(results + errors)
    assert os.listdir(tmp_path / "out") == [output.folder_name]        # the staging folder is gone
    with pytest.raises(FileExistsError):                               # nothing is overwritten
        _write(output, RESULTS, [0], 1)
        output.publish(explained=True)


def test_a_job_without_errors_has_no_errors_files_and_discard_leaves_nothing(tmp_path):
    output = JobOutput(str(tmp_path), "job2", "prediction-m-x")
    _write(output, RESULTS, [0, 1], rows_per_file=100)
    assert output.publish(explained=False) == (["prediction.results-00000-of-00001"], [])
    failed = JobOutput(str(tmp_path), "job3", "prediction-m-y")
    _write(failed, RESULTS, [0, 1], rows_per_file=1)
    _write(failed, ERRORS, [2], rows_per_file=1)
    failed.discard()
    failed.discard()                                                   # twice: nothing to remove, no error
    assert os.listdir(tmp_path) == ["prediction-m-x"]


def test_writer_refuses_empty_parts():
    with pytest.raises(ValueError):
        PartWriter("/tmp/unused", 0)


def test_the_job_fails_once_more_than_its_fraction_failed():
    tally = Tally(total=100, max_failed_fraction=0.1)
    tally.add(40, [(3, "f line 1: bad")] * 10)                         # exactly 10%: goes on
    assert (tally.done, tally.failed, tally.succeeded) == (50, 10, 40)
    with pytest.raises(TooManyFailures) as e:
        tally.add(0, [(3, "f line 60: bad")])
    assert e.value.field == "input_config" and "11 of 100 rows failed" in e.value.message
    assert "bad" in e.value.message
    none_allowed = Tally(total=5, max_failed_fraction=0.0)
    none_allowed.add(5, [])
    with pytest.raises(TooManyFailures):
        none_allowed.add(0, [(13, "boom")])


def test_error_kinds_group_rows_without_their_lines_and_are_bounded():
    tally = Tally(total=1000, max_failed_fraction=1.0)
    tally.add(0, [(3, "a.jsonl line 1: instance.x: missing"), (3, "b.jsonl line 9: instance.x: missing"),
                  (5, "c line 2: gone")])
    kinds = tally.kinds()
    assert [(k.code, k.rows) for k in kinds] == [(3, 2), (5, 1)]
    assert kinds[0].message == "a.jsonl line 1: instance.x: missing"   # the first, whole
    tally.add(0, [(3, f"f line {i}: error number {i}") for i in range(50)])
    assert len(tally.kinds()) == MAX_KINDS                              # the rest under one "other errors" kind
    assert any(k.message.startswith("other errors, the first: f line") for k in tally.kinds())
    assert sum(k.rows for k in tally.kinds()) == tally.failed == 53
    assert tally.output().error_kinds == tally.kinds()
