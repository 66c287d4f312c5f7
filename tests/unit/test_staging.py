"""Remote text data files are copied once; errors still name their URLs."""
import json
import uuid

import fsspec
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.builds import staging
from explaind.server.builds.readers import count_records, expand_uris, iter_records

FIELD = "model.explanation_spec.parameters.examples.gcs_source.uris"


def _remote_jsonl(lines) -> str:
    url = f"memory://data-{uuid.uuid4().hex}/part.jsonl"
    with fsspec.open(url, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return url


def test_remote_files_are_read_from_one_local_copy(tmp_path):
    url = _remote_jsonl([json.dumps({"embedding": [float(i), 1.0], "id": f"r{i}"}) for i in range(5)])
    local_file = tmp_path / "local.jsonl"
    local_file.write_text(json.dumps({"embedding": [9.0, 9.0], "id": "l0"}) + "\n")
    paths = expand_uris([url, str(local_file)], FIELD)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with staging.staged_locally(paths, str(scratch), 2**30) as staged:
        assert staged[1] == paths[1]                     # local files are read in place
        assert not staging.is_remote(staged[0]) and staged[0].field == FIELD + "[0]"
        fsspec.filesystem("memory").rm(url.split("://", 1)[1])   # the store copy is not read again
        assert count_records(staged) == 6
        assert [r.id for r in iter_records(staged, None, FIELD)] == ["r0", "r1", "r2", "r3", "r4", "l0"]


def test_errors_name_the_remote_url_not_the_copy(tmp_path):
    url = _remote_jsonl([json.dumps({"embedding": [1.0]}), "{not json"])
    paths = expand_uris([url], FIELD)
    with pytest.raises(InvalidArgument) as err:
        with staging.staged_locally(paths, str(tmp_path), 2**30) as staged:
            list(iter_records(staged, None, FIELD))
    assert err.value.message.startswith(f"{paths[0]} line 2: invalid JSON")
    assert str(tmp_path) not in err.value.message
    assert err.value.field == FIELD + "[0]"


@pytest.mark.parametrize("disk_share, max_bytes", [(0.0, 2**30), (0.5, 0), (0.5, 10)])
def test_files_that_do_not_fit_the_disk_share_or_the_cap_stay_remote(tmp_path, monkeypatch, disk_share, max_bytes):
    url = _remote_jsonl([json.dumps({"embedding": [1.0]})])       # 18 bytes
    monkeypatch.setattr(staging, "DISK_SHARE", disk_share)
    paths = expand_uris([url], FIELD)
    with staging.staged_locally(paths, str(tmp_path), max_bytes) as staged:
        assert staged == paths and count_records(staged) == 1
