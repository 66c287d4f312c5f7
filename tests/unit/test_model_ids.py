"""The two model-id rules (model_ids.py) and their users: UploadModel's new ids,
the store's keys and request names, each with hostile values."""
from __future__ import annotations

import pytest

from explaind.server.api import names
from explaind.server.errors import InvalidArgument
from explaind.server.model_ids import check_new_model_id, is_new_model_id, is_stored_model_id
from explaind.server.store.models import ModelStore
from explaind.server.store.objects import ObjectStore

GOOD_NEW = ["a", "_", "m1", "my-model_2", "a" * 63, "_0-"]
BAD_NEW = ["", "1model", "-model", "Model", "a" * 64, "m.1", "m/1", "m\n", "m ", "é", "m\x00", "..", "."]
GOOD_STORED = GOOD_NEW + ["Model", "1model", "-m", "m.1", "...", ".hidden", "a" * 128]
BAD_STORED = ["", ".", "..", "a" * 129, "m/1", "m\n", "..\n", ".\n", "m ", "é", "m\x00", "../x", "a\\b"]


@pytest.mark.parametrize("value", GOOD_NEW)
def test_new_ids(value):
    assert is_new_model_id(value) and is_stored_model_id(value)       # every new id can be stored
    assert check_new_model_id(value) == value


@pytest.mark.parametrize("value", BAD_NEW)
def test_refused_new_ids_name_the_field(value):
    assert not is_new_model_id(value)
    with pytest.raises(InvalidArgument) as e:
        check_new_model_id(value)
    assert e.value.field == "model_id" and "not a valid model id" in e.value.message


def test_a_huge_new_id_is_not_echoed_whole():
    with pytest.raises(InvalidArgument) as e:
        check_new_model_id("x" * 100_000)
    assert len(e.value.message) < 400


@pytest.mark.parametrize("value", GOOD_STORED)
def test_stored_ids(value):
    assert is_stored_model_id(value)
    assert names.model_id(f"models/{value}") == value


@pytest.mark.parametrize("value", BAD_STORED + [None, 3, b"m"])
def test_refused_stored_ids(value):
    assert not is_stored_model_id(value)


@pytest.mark.parametrize("value", BAD_STORED)
def test_requests_and_the_store_refuse_what_a_key_cannot_hold(tmp_path, value):
    with pytest.raises(InvalidArgument) as e:
        names.model_id(f"models/{value}")
    assert e.value.field == "name"
    store = ModelStore(ObjectStore(str(tmp_path)))
    assert store.get(value) is None and store.get_published(value) is None
