"""The store's own guarantees, on a local folder (the S3 side runs in
tests/integration/test_replicas_s3.py against an S3-compatible server)."""
import threading
import time

import pytest
from google.longrunning import operations_pb2

from explaind.server.errors import AlreadyExists
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import KeyExists, ObjectStore
from explaind.server.store.operations import OperationRecord, OperationStore
from explaind.server.store.retry import StoreError
from explaind.v1 import model_pb2


def test_create_is_exclusive_under_contention(tmp_path):
    store = ObjectStore(str(tmp_path))
    wins, losses = [], []

    def claim(i):
        try:
            store.create("claims/x", str(i).encode())
            wins.append(i)
        except KeyExists:
            losses.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 15
    assert store.read("claims/x") == str(wins[0]).encode()
    assert not [n for n in store.list("claims") if n.startswith(".tmp")]    # no temp files left behind


def test_published_builds_follow_rewrites_and_deletes(tmp_path):
    models = ModelStore(ObjectStore(str(tmp_path)))
    record = ModelRecord(model=model_pb2.Model(name="models/m"), build_id="b000000000001")
    assert models.published_builds() == {}
    models.publish(record)
    assert models.published_builds() == {"m": "b000000000001"}
    record.build_id = "b000000000002"                      # same size on disk: a rewrite, not a new size
    models.publish(record)
    assert models.published_builds() == {"m": "b000000000002"}
    models.delete("m")
    assert models.published_builds() == {}
    # A second store on the same folder (another replica) agrees.
    models.publish(record)
    assert ModelStore(ObjectStore(str(tmp_path))).published_builds() == {"m": "b000000000002"}


def test_claims_refuse_a_second_build_and_a_published_id(tmp_path):
    models = ModelStore(ObjectStore(str(tmp_path)))
    record = ModelRecord(model=model_pb2.Model(name="models/c", state=model_pb2.Model.BUILDING), operation="operations/1")
    models.claim(record)
    with pytest.raises(AlreadyExists):
        models.claim(record)
    models.publish(ModelRecord(model=model_pb2.Model(name="models/c", state=model_pb2.Model.READY)))
    with pytest.raises(AlreadyExists):
        models.claim(record)


def test_deleted_operation_stays_deleted_when_written_again(tmp_path):
    objects = ObjectStore(str(tmp_path))
    operations = OperationStore(objects)
    record = OperationRecord(operation=operations_pb2.Operation(name="operations/abc"))
    operations.put(record)
    assert [r.op_id for r in operations.list()] == ["abc"]
    operations.delete("abc")
    operations.put(record)              # a build that did not hear of the delete writes its progress
    assert operations.get("abc") is None
    assert operations.list() == []
    assert not objects.exists("operations/abc.json")    # list() sweeps the stray record


def test_a_cancel_read_before_the_build_ended_never_reopens_the_operation(tmp_path):
    """CancelOperation reads the record, the build finishes, then the cancel lands:
    the operation must stay done (a rewrite of the stale record would reopen it)."""
    from explaind.server.config import Settings
    from explaind.server.builds.uploads import UploadManager

    objects = ObjectStore(str(tmp_path))
    operations = OperationStore(objects)
    uploads = UploadManager(ModelStore(objects), operations, Settings())
    try:
        operations.put(OperationRecord(operation=operations_pb2.Operation(name="operations/abc")))
        stale = operations.get("abc")             # what the CancelOperation handler read
        finished = operations.get("abc")
        finished.operation.done = True            # the build's final write
        operations.put(finished)
        uploads.cancel(stale)
        assert operations.get("abc").operation.done
        assert operations.cancel_requested("abc")  # the build, had it still run, would see it
        operations.delete("abc")
        assert not operations.cancel_requested("abc")
    finally:
        uploads.shutdown()


def test_one_update_of_a_model_at_a_time_and_pruning_keeps_what_is_read(tmp_path):
    from explaind.server.errors import FailedPrecondition
    objects = ObjectStore(str(tmp_path))
    models = ModelStore(objects)
    published = ModelRecord(model=model_pb2.Model(name="models/m"), build_id="b1")
    models.publish(published)
    models.claim_update(ModelRecord(model=published.model, operation="operations/first", build_id="b2"))
    with pytest.raises(FailedPrecondition) as e:
        models.claim_update(ModelRecord(model=published.model, operation="operations/second", build_id="b3"))
    assert "operations/first" in e.value.message and e.value.field == "model"
    assert models.get("m").build_id == "b1"                  # the published record still answers
    for build in ("b0", "b1", "b2"):
        objects.write(f"models/m/builds/{build}/meta.json", b"{}")
        objects.write(f"models/m/segments/{build}.npy", b"x")
    models.prune("m", keep_builds={"b1", "b2"}, keep_segments={"b0", "b2"})
    assert objects.list("models/m/builds") == ["b1", "b2"]
    assert objects.list("models/m/segments") == ["b0.npy", "b2.npy"]
    models.discard_build("m", "b2")                          # a failed update: its build and segment go
    assert objects.list("models/m/builds") == ["b1"] and objects.list("models/m/segments") == ["b0.npy"]
    models.release_claim("m")
    models.claim_update(ModelRecord(model=published.model, operation="operations/third", build_id="b4"))


def test_housekeeping_completes_an_operation_whose_model_was_published_but_final_write_lost(tmp_path):
    """The store failed after the model record was written and before the operation's
    final write: housekeeping ends it as the success it was, not ABORTED."""
    from explaind.server.builds.uploads import UploadManager
    from explaind.server.config import Settings
    from explaind.v1 import model_service_pb2

    objects = ObjectStore(str(tmp_path))
    models, operations = ModelStore(objects), OperationStore(objects)
    uploads = UploadManager(models, operations, Settings(heartbeat_timeout_seconds=1))
    try:
        for model_id, published in (("done", True), ("dead", False)):
            meta = model_service_pb2.UploadModelOperationMetadata(model=f"models/{model_id}")
            op = operations_pb2.Operation(name=f"operations/{model_id}-op")
            op.metadata.Pack(meta)
            record = ModelRecord(model=model_pb2.Model(name=f"models/{model_id}", state=model_pb2.Model.BUILDING),
                                 operation=op.name)
            models.claim(record)
            operations.put(OperationRecord(operation=op))
            if published:
                record.model.state = model_pb2.Model.READY
                models.publish(record)
        time.sleep(1.2)                                  # both silent past the heartbeat timeout
        assert uploads.fail_stale_builds() == 2
        done, dead = operations.get("done-op").operation, operations.get("dead-op").operation
        assert done.done and not done.HasField("error")
        response = model_service_pb2.UploadModelResponse()
        done.response.Unpack(response)
        assert response.model.name == "models/done" and models.get_published("done") is not None
        assert dead.done and dead.error.code == 10 and "heartbeats" in dead.error.message    # ABORTED
        assert models.get("dead") is None                 # the id is free again
    finally:
        uploads.shutdown()


def test_a_build_releases_only_its_own_claim(tmp_path):
    models = ModelStore(ObjectStore(str(tmp_path)))
    models.claim(ModelRecord(model=model_pb2.Model(name="models/m"), operation="operations/new-upload"))
    models.release_own_claim("m", "operations/old-build")     # ended elsewhere; the id was claimed again
    assert models.get("m").operation == "operations/new-upload"
    models.release_own_claim("m", "operations/new-upload")
    assert models.get("m") is None
    models.release_own_claim("m", "operations/new-upload")    # nothing left: no error


def test_housekeeping_of_updates_keeps_the_published_build(tmp_path):
    """A dead update's operation: only its staging build and segment go (the claim names
    them), the published build stays. An update whose record was published but whose
    final write (and claim release) was lost: completed with its counts, claim dropped."""
    from explaind.server.builds.uploads import UploadManager
    from explaind.server.config import Settings
    from explaind.v1 import model_service_pb2

    objects = ObjectStore(str(tmp_path))
    models, operations = ModelStore(objects), OperationStore(objects)
    uploads = UploadManager(models, operations, Settings(heartbeat_timeout_seconds=1))
    try:
        for model_id, published_by_update in (("dead", False), ("done", True)):
            update_op = f"operations/{model_id}-update"
            record = ModelRecord(model=model_pb2.Model(name=f"models/{model_id}", state=model_pb2.Model.READY),
                                 operation=f"operations/{model_id}-upload", build_id="b1")
            for build in ("b1", "b2"):
                objects.write(f"models/{model_id}/builds/{build}/meta.json",
                              b'{"last_update": [3, 1]}' if build == "b2" else b"{}")
                objects.write(f"models/{model_id}/segments/{build}.npy", b"x")
            models.publish(record)
            models.claim_update(ModelRecord(model=record.model, operation=update_op, build_id="b2"))
            if published_by_update:
                record.operation, record.build_id = update_op, "b2"
                models.publish(record, release=False)
            meta = model_service_pb2.UploadModelOperationMetadata(model=f"models/{model_id}", base_build="b1")
            op = operations_pb2.Operation(name=update_op)
            op.metadata.Pack(meta)
            operations.put(OperationRecord(operation=op))
        time.sleep(1.2)                                  # both silent past the heartbeat timeout
        assert uploads.fail_stale_builds() == 2

        dead = operations.get("dead-update").operation
        assert dead.done and dead.error.code == 10 and "update again" in dead.error.message    # ABORTED
        assert models.get_published("dead").build_id == "b1" and models.get_claim("dead") is None
        assert objects.list("models/dead/builds") == ["b1"] and objects.list("models/dead/segments") == ["b1.npy"]

        done = operations.get("done-update").operation
        assert done.done and not done.HasField("error")
        response = model_service_pb2.UpdateExplanationDatasetResponse()
        assert done.response.Unpack(response)
        assert (response.model.name, response.examples_added, response.examples_removed) == ("models/done", 3, 1)
        assert models.get_published("done").build_id == "b2" and models.get_claim("done") is None
    finally:
        uploads.shutdown()


def test_a_claim_left_by_an_ended_update_does_not_block_the_next(tmp_path):
    """The release of an update's claim was lost (a store outage as it ended): the next
    update clears a claim whose operation is done; one whose operation runs still holds."""
    from explaind.server.builds.uploads import UploadManager
    from explaind.server.config import Settings
    from explaind.server.errors import FailedPrecondition

    objects = ObjectStore(str(tmp_path))
    models, operations = ModelStore(objects), OperationStore(objects)
    uploads = UploadManager(models, operations, Settings())
    try:
        published = ModelRecord(model=model_pb2.Model(name="models/m"), build_id="b1")
        models.publish(published)
        running = operations_pb2.Operation(name="operations/running")
        operations.put(OperationRecord(operation=running))
        models.claim_update(ModelRecord(model=published.model, operation=running.name, build_id="b2"))
        with pytest.raises(FailedPrecondition):
            uploads._claim_update(ModelRecord(model=published.model, operation="operations/next", build_id="b3"))
        running.done = True
        operations.put(OperationRecord(operation=running))
        uploads._claim_update(ModelRecord(model=published.model, operation="operations/next", build_id="b3"))
        assert models.get_claim("m").operation == "operations/next"
    finally:
        uploads.shutdown()


def test_a_builds_files_and_segments_round_trip_through_the_store(tmp_path):
    """What builds and the loader ask of the store, by model and build, never by key; a
    second store opened at `uri` (as a build process opens it) sees the same files."""
    models = ModelStore(ObjectStore(str(tmp_path / "store")))
    built, segments = tmp_path / "built", tmp_path / "segments"
    built.mkdir()
    segments.mkdir()
    (built / "meta.json").write_bytes(b'{"kind": "flat"}')
    (built / "ids.bin").write_bytes(b"\x00" * 10)
    (segments / "b1.npy").write_bytes(b"vectors")
    assert models.upload_build("m", "b1", str(built)) == 26
    assert models.upload_segments("m", str(segments)) == 7
    other = ModelStore.at(models.uri)
    assert other.read_build_file("m", "b1", "meta.json") == b'{"kind": "flat"}'
    assert other.read_build_file("m", "b1", "absent.json") is None
    assert other.read_build_file("m", "b2", "meta.json") is None
    other.download_build("m", "b1", str(tmp_path / "copy"))
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["ids.bin", "meta.json"]
    other.download_segment("m", "b1", str(tmp_path / "b1.npy"))
    assert (tmp_path / "b1.npy").read_bytes() == b"vectors"
    models.discard_build("m", "b1")
    assert other.read_build_file("m", "b1", "meta.json") is None
    with pytest.raises(FileNotFoundError):
        other.download_segment("m", "b1", str(tmp_path / "again.npy"))


def test_a_delete_whose_folder_a_create_writes_into_tries_again(tmp_path, monkeypatch):
    """A concurrent create (an endpoint's lock) writes into the folder delete_prefix is
    removing (the fuzzer found it: 'Directory not empty', INTERNAL): the delete tries
    again and the folder is gone, the late file with it."""
    import errno
    import os

    store = ObjectStore(str(tmp_path))
    store.write("endpoints/e/record", b"x")
    real_rm, raced = store.fs.rm, []

    def rm_while_a_create_writes(path, recursive=False):
        if not raced:
            raced.append(path)
            store.create("endpoints/e/lock", b"held")        # lands mid-removal
            raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
        return real_rm(path, recursive=recursive)

    monkeypatch.setattr(store.fs, "rm", rm_while_a_create_writes)
    store.delete_prefix("endpoints/e")
    assert raced and not os.path.exists(tmp_path / "endpoints" / "e")

    def always_refused(path, recursive=False):
        raise OSError(errno.EACCES, "Permission denied", path)

    store.write("endpoints/f/record", b"x")
    monkeypatch.setattr(store.fs, "rm", always_refused)
    with pytest.raises(StoreError):                           # other refusals are not retried away
        store.delete_prefix("endpoints/f")


def test_a_create_whose_folder_is_removed_under_it_tries_again(tmp_path, monkeypatch):
    """An endpoint's lock taken while a concurrent delete removes the endpoint's
    folder (the fuzzer found it: FileNotFoundError, INTERNAL): the create tries again."""
    import os
    import shutil

    from explaind.server.store import objects

    store = ObjectStore(str(tmp_path))
    real_link, removed = os.link, []

    def link_after_a_concurrent_delete(src, dst):
        if not removed:
            removed.append(dst)
            shutil.rmtree(os.path.dirname(dst))          # delete_prefix, between makedirs and link
        return real_link(src, dst)

    monkeypatch.setattr(objects.os, "link", link_after_a_concurrent_delete)
    store.create("endpoints/e/lock", b"held")
    assert removed and store.read("endpoints/e/lock") == b"held"
    assert os.listdir(tmp_path / "endpoints" / "e") == ["lock"]        # no temporary file left
    with pytest.raises(KeyExists):
        store.create("endpoints/e/lock", b"again")
