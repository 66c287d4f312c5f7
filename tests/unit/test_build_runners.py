"""The build runners' pieces without a daemon: choosing a runner (and refusing
hostile labels), the memory limit and its measure, what travels to a build
process by pickle, the Ray embedding shards and the errors Ray hands back."""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from google.protobuf import json_format

from explaind.server.builds.embedding import PreparedBatch
from explaind.server.builds.recipes import BuildOptions, recipe_for
from explaind.server.builds.runners import LABEL_FIELD, RUNNER_LABEL, choose_runner, make_runners
from explaind.server.builds.runners.memory import child_pids, parse_memory_limit, tree_rss
from explaind.server.builds.runners.messages import BuildCrashed, BuildFailed, ChildPayload
from explaind.server.builds.runners.outcome import BuildOutput, IndexSummary
from explaind.server.builds.runners.request import BuildTask
from explaind.server.builds.runners.ray_embedding import RayConfig, explaind_error
from explaind.server.builds.runners.shards import read_shards, write_shard
from explaind.server.config import Settings
from explaind.server.errors import DimensionMismatch, ExplaindError, FailedPrecondition, InvalidArgument
from explaind.server.index.example_index import IndexInfo
from explaind.server.index.restricts import Namespace
from explaind.server.store.objects import ObjectStore
from explaind.v1 import model_pb2


# ------------------------------------------------------------------ choosing a runner


def test_the_label_overrides_the_daemons_runner():
    available = {"local": object(), "ray": object()}
    assert choose_runner({}, "local", available) == "local"
    assert choose_runner({"team": "x"}, "ray", available) == "ray"
    assert choose_runner({RUNNER_LABEL: "ray"}, "local", available) == "ray"
    assert choose_runner({RUNNER_LABEL: "local"}, "ray", available) == "local"


@pytest.mark.parametrize("value", ["thread", "LOCAL", "", "ray ", "gpu", "x" * 10_000, "ray\x00", "☃"])
def test_a_bad_runner_label_is_invalid_argument_naming_the_label(value):
    with pytest.raises(InvalidArgument) as e:
        choose_runner({RUNNER_LABEL: value}, "local", {"local": object(), "ray": object(), "thread": object()})
    assert e.value.field == LABEL_FIELD == 'model.labels["explaind.dev/build-runner"]'
    assert "must be local or ray" in e.value.message
    assert len(e.value.message) < 120          # a huge value is not echoed whole


def test_ray_without_a_cluster_is_failed_precondition():
    with pytest.raises(FailedPrecondition) as e:
        choose_runner({RUNNER_LABEL: "ray"}, "local", {"local": object()})
    assert e.value.field == LABEL_FIELD and "--ray-address" in e.value.message


def test_bad_runner_settings_fail_at_start():
    with pytest.raises(ValueError, match="--build-runner must be one of local, ray, thread"):
        make_runners(Settings(build_runner="gpu"))
    with pytest.raises(ValueError, match="needs --ray-address"):
        make_runners(Settings(build_runner="ray"))
    with pytest.raises(ValueError, match="--ray-workers"):
        make_runners(Settings(ray_address="127.0.0.1:6379", ray_workers=-1))
    with pytest.raises(ValueError, match="not a size"):
        make_runners(Settings(build_memory_limit="lots"))
    runners = make_runners(Settings(ray_address="127.0.0.1:6379", build_spare_process=False))
    assert sorted(runners) == ["local", "ray"]
    assert sorted(make_runners(Settings(build_runner="thread"))) == ["local", "thread"]


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("1000", 1000), ("512Mi", 512 * 2**20), ("8Gi", 8 * 2**30), ("8G", 8 * 10**9),
    ("8GB", 8 * 10**9), ("1.5Gi", int(1.5 * 2**30)), (" 64 mi ", 64 * 2**20), ("2Ti", 2 * 2**40),
])
def test_memory_limits_parse(text, expected):
    assert parse_memory_limit(text) == expected


def test_auto_is_a_share_of_what_the_container_has():
    assert parse_memory_limit("auto", available=10 * 2**30) == 8 * 2**30
    assert 0 < parse_memory_limit("auto") <= parse_memory_limit("auto", available=2**62)


@pytest.mark.parametrize("text", ["", "-1", "lots", "8 XB", "1e9", "8Gi; rm -rf /", "9" * 100, "0x10", "Gi"])
def test_hostile_memory_limits_are_refused(text):
    with pytest.raises(ValueError, match="--build-memory-limit"):
        parse_memory_limit(text)


def test_tree_rss_counts_a_process_and_its_descendants():
    # A child that starts a grandchild holding 60 MB of touched memory.
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'b = bytearray(60 * 2**20); import time; time.sleep(60)']); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tree_rss(proc.pid) < 60 * 2**20:
            time.sleep(0.1)
        assert tree_rss(proc.pid) >= 60 * 2**20
    finally:
        for child in child_pids(proc.pid):      # the grandchild this test started, by its pid
            os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
    assert tree_rss(proc.pid) == 0


# ------------------------------------------------------------------ what a build process receives


def test_recipes_and_payloads_travel_by_pickle(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((3, 4), np.float32))
    model = json_format.ParseDict({"explanationSpec": {"parameters": {"examples": {
        "gcsSource": {"uris": [str(tmp_path / "e.npy")]},
        "nearestNeighborSearchConfig": {"config": {"dimensions": 4, "algorithmConfig": {"bruteForceConfig": {}}}}}}}},
        model_pb2.Model())
    recipe = recipe_for(model, 1000)
    task = BuildTask(recipe=recipe, model=model.SerializeToString(), options=BuildOptions(embed_batch_size=7),
                     out_dir=str(tmp_path), build_id="b1", operation="operations/x", store_uri=str(tmp_path),
                     shard_prefix="models/m/builds/b1/shards")
    payload = ChildPayload(task, ray=RayConfig(address="127.0.0.1:6379", workers=2))
    back = pickle.loads(pickle.dumps(payload))
    assert back == payload and back.task.recipe == recipe and back.ray == payload.ray
    assert back.task.model_message() == model
    output = BuildOutput(model=model.SerializeToString(), index=IndexSummary(
        size=3, dimensions=4, info=IndexInfo("Flat", 0, 0, "cpu", 48, "DOT_PRODUCT_DISTANCE"),
        config=recipe.search_config))
    assert pickle.loads(pickle.dumps(output)) == output


# ------------------------------------------------------------------ shards


def _prepared(position: int, n: int, d: int, seed: int) -> tuple[PreparedBatch, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = PreparedBatch(position=position, ids=[f"id{position + i}" for i in range(n)],
                          restricts=[[Namespace("color", ("red",), ("blue", "é"))] if i % 2 else [] for i in range(n)],
                          tags=[None if i % 3 else f"t{i}" for i in range(n)], vectors=[None] * n, groups=[])
    return batch, rng.normal(size=(n, d)).astype(np.float32)


def test_shards_come_back_in_data_set_order(tmp_path):
    objects = ObjectStore(str(tmp_path))
    parts = [_prepared(5, 4, 3, 1), _prepared(0, 5, 3, 2), _prepared(9, 1, 3, 3)]
    for batch, vectors in parts:                       # written out of order, as actors finish
        write_shard(objects, "m/shards", batch, vectors)
    examples = read_shards(objects, "m/shards", 10, "uris")
    order = sorted(parts, key=lambda p: p[0].position)
    np.testing.assert_array_equal(examples.embeddings, np.concatenate([v for _, v in order]))
    assert examples.ids == [i for b, _ in order for i in b.ids]
    assert examples.tags == [t for b, _ in order for t in b.tags]
    assert examples.restricts == [r for b, _ in order for r in b.restricts]


def test_shards_that_do_not_cover_the_data_set_fail(tmp_path):
    objects = ObjectStore(str(tmp_path))
    write_shard(objects, "gap", *_prepared(0, 4, 3, 1))
    write_shard(objects, "gap", *_prepared(5, 2, 3, 1))
    with pytest.raises(InvalidArgument, match="no embedding came back for example 4"):
        read_shards(objects, "gap", 7, "uris")
    with pytest.raises(InvalidArgument, match="does not fit the data set"):
        read_shards(objects, "gap", 6, "uris")
    write_shard(objects, "dims", *_prepared(0, 2, 3, 1))
    write_shard(objects, "dims", *_prepared(2, 2, 5, 1))
    with pytest.raises(InvalidArgument, match="5-value embeddings") as e:
        read_shards(objects, "dims", 4, "uris")
    assert e.value.field == "uris"


# ------------------------------------------------------------------ errors from Ray


class _Wrapper(Exception):
    """Stands in for Ray's wrappers: the original exception as `cause`."""

    def __init__(self, cause):
        super().__init__(f"wrapped: {cause}")
        self.cause = cause


def test_the_domain_error_inside_rays_wrappers_comes_back():
    inner = pickle.loads(pickle.dumps(InvalidArgument("bad token", field="examples[3].restricts")))
    assert inner.field == "examples[3].restricts"       # the field survives the trip through pickle
    dual = type("RayTaskError(InvalidArgument)", (_Wrapper, InvalidArgument), {})
    for error in (_Wrapper(_Wrapper(inner)), dual(inner)):
        found = explaind_error(error)
        assert type(found) is InvalidArgument
        assert (found.message, found.field) == ("bad token", "examples[3].restricts")
    other = explaind_error(_Wrapper(KeyError("x")))
    assert type(other) is ExplaindError and "the Ray embedding stage failed" in other.message


def test_ray_config_checks_its_address():
    with pytest.raises(ValueError, match="--ray-address"):
        RayConfig(address=" ").check()
    with pytest.raises(ValueError, match="does not run through Ray Client"):
        RayConfig(address="ray://head:10001").check()
    RayConfig(address="auto").check()
    assert dataclasses.replace(RayConfig(address="a"), workers=3).workers == 3


@pytest.mark.parametrize("flags, message", [
    (["--build-runner", "gpu"], "--build-runner must be one of local, ray, thread"),
    (["--build-memory-limit", "8 XB"], "--build-memory-limit: '8 XB' is not a size"),
    (["--build-runner", "ray"], "needs --ray-address"),
])
def test_serve_refuses_bad_runner_settings_before_it_starts(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "-m", "explaind.server.main", "serve", "--host", "127.0.0.1", "--port", "0",
                           "--metrics-port", "0", "--store", str(tmp_path / "store"), *flags],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_build_process_opens_only_what_the_daemon_would(tmp_path):
    """A build runs in another process (or on Ray): it installs the daemon's
    --allowed-uri-prefix before reading, so a file that appears in an allowed
    folder after the upload was validated, as a link to a file outside, is refused."""
    from explaind.server.builds.readers.source import DataSource
    from explaind.server.builds.recipes import ExamplesRecipe
    from explaind.server.builds.runners.outcome import run_recipe
    from explaind.server.errors import PermissionDenied
    from explaind.server.index.config import SearchConfig
    from explaind.server.security import uris

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"embedding": [1.0, 2.0]}\n')
    os.symlink(outside / "secret.jsonl", allowed / "late.jsonl")
    config = SearchConfig(dimensions=2, distance="DOT_PRODUCT_DISTANCE", feature_norm="NONE", algorithm="brute_force")
    recipe = ExamplesRecipe(config, DataSource([str(allowed)], "model.explanation_spec.parameters.examples."
                                               "gcs_source.uris", None))

    class Progress:
        def stage(self, stage):
            pass

        def examples(self, embedded, total):
            pass

    before = uris.policy()
    try:
        with pytest.raises(PermissionDenied) as refused:
            run_recipe(_task(recipe, BuildOptions(allowed_uri_prefixes=(str(allowed),)), tmp_path), Progress())
        assert refused.value.field.endswith("gcs_source.uris[0]")
        # The same build with the prefix that holds the file reads it.
        output = run_recipe(_task(recipe, BuildOptions(allowed_uri_prefixes=(str(allowed), str(outside))), tmp_path),
                            Progress())
        assert output.index.size == 1 and (tmp_path / "index" / "meta.json").exists()
    finally:
        uris.install(before)


def _task(recipe, options: BuildOptions, out_dir) -> BuildTask:
    return BuildTask(recipe=recipe, model=model_pb2.Model(name="models/m").SerializeToString(), options=options,
                     out_dir=str(out_dir), build_id="b1")


# ------------------------------------------------------------------ the build process's messages


@pytest.mark.parametrize("error, cls", [
    (InvalidArgument("bad id", field="examples[2]"), InvalidArgument),
    (FailedPrecondition("no", field=None), FailedPrecondition),
    (ExplaindError("odd"), ExplaindError),
])
def test_a_failed_build_comes_back_as_its_error(error, cls):
    back = pickle.loads(pickle.dumps(BuildFailed.of(error))).error()
    assert type(back) is cls and (back.message, back.field) == (error.message, error.field)


def test_an_errors_subclass_from_elsewhere_travels_as_its_errors_py_class():
    from explaind.server.errors import Unavailable
    from explaind.server.store.retry import StoreUnavailable

    message = BuildFailed.of(StoreUnavailable("the store did not answer"))
    assert message.error_class == "Unavailable" and type(message.error()) is Unavailable


@pytest.mark.parametrize("name", ["os", "ExplaindErrorX", "", "__class__", "DimensionMismatch.mro"])
def test_an_unknown_error_class_name_becomes_a_plain_internal_error(name):
    back = BuildFailed(name, "m", "f").error()
    assert type(back) is ExplaindError and (back.message, back.field) == ("m", "f")


def test_a_crash_names_its_exception_type():
    back = BuildCrashed("ZeroDivisionError", "division by zero").error()
    assert type(back) is ExplaindError and back.message == "ZeroDivisionError: division by zero"


class _Recorder:
    def __init__(self):
        self.calls = []

    def stage(self, stage):
        self.calls.append(("stage", stage))

    def examples(self, embedded, total):
        self.calls.append(("examples", embedded, total))


def _index_only_task(tmp_path, data, build_id="b1"):
    model = json_format.ParseDict({"explanationSpec": {"parameters": {"examples": {
        "gcsSource": {"uris": [str(data)]},
        "nearestNeighborSearchConfig": {"config": {"dimensions": 4, "algorithmConfig": {"bruteForceConfig": {}}}}}}}},
        model_pb2.Model(name="models/m"))
    return BuildTask(recipe=recipe_for(model, 100), model=model.SerializeToString(), options=BuildOptions(),
                     out_dir=str(tmp_path / "out"), build_id=build_id, operation="operations/t")


def test_a_build_process_reports_through_typed_messages(tmp_path):
    """A real build process (ProcessRunner): its stages and counts reach the job's progress in
    order, its index lands in out_dir, and an error comes back as its class with its field."""
    from explaind.server.builds.runners.local import BuildProcesses, ProcessRunner
    from explaind.server.builds.runners.request import BuildCancelled, BuildRequest
    from explaind.v1 import model_service_pb2

    import threading

    Stage = model_service_pb2.UploadModelOperationMetadata.Stage
    vectors = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", vectors)
    processes = BuildProcesses(spare=False)
    runner = ProcessRunner(0, processes, log_json=False)
    try:
        progress = _Recorder()
        task = _index_only_task(tmp_path, tmp_path / "e.npy")
        output = runner.run(BuildRequest(task, progress, threading.Event()))
        stages = [c[1] for c in progress.calls if c[0] == "stage"]
        assert stages == [Stage.LOADING_MODEL, Stage.READING_EXAMPLES, Stage.EMBEDDING, Stage.BUILDING_INDEX]
        assert ("examples", 30, 30) in progress.calls
        assert output.index.size == 30 and output.index.dimensions == 4
        assert output.model_message().name == "models/m"
        assert (tmp_path / "out" / "index" / "meta.json").exists()

        np.save(tmp_path / "e.npy", vectors[:, :3])       # the data changed after validation: 3 values, not 4
        with pytest.raises(ExplaindError) as failed:
            runner.run(BuildRequest(_index_only_task(tmp_path, tmp_path / "e.npy", "b2"), _Recorder(),
                                    threading.Event()))
        assert type(failed.value) is DimensionMismatch
        assert failed.value.field == "model.explanation_spec.parameters.examples.nearest_neighbor_search_config" \
            ".config.dimensions"

        cancel = threading.Event()
        cancel.set()
        with pytest.raises(BuildCancelled):
            runner.run(BuildRequest(_index_only_task(tmp_path, tmp_path / "e.npy", "b3"), _Recorder(), cancel))
    finally:
        processes.close()


@pytest.mark.parametrize("cores, alongside", [(2, False), (8, True)])
def test_the_next_spare_imports_alongside_a_build_only_on_a_node_with_cores_to_spare(cores, alongside):
    """Taking the spare starts the next one at once on a node of 4 cores or more; on a smaller
    node the next one starts when the build has ended, not while it runs."""
    from explaind.server.builds.runners.local import BuildProcesses

    processes = BuildProcesses(spare=True, cores=cores)
    try:
        assert not processes.spare_alive             # the first spare comes with the first build
        taken = processes.take()
        assert processes.spare_alive is alongside
        taken.stop()
        processes.finished()
        assert processes.spare_alive
        second = processes.take()                    # the spare, alive: no new process
        assert second.proc.poll() is None
        second.stop()
    finally:
        processes.close()
    assert not processes.spare_alive
