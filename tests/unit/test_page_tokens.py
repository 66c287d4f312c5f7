"""Page tokens of the List methods: what was issued reads back; nothing else does."""
import pytest

from explaind.server.control import page_tokens
from explaind.server.errors import InvalidArgument


@pytest.mark.parametrize("name", ["m", "model-1", "projects/p/locations/l/models/é", "x" * 300])
def test_an_issued_token_reads_back(name):
    assert page_tokens.decode(page_tokens.encode(name)) == name
    assert page_tokens.decode("") == ""


@pytest.mark.parametrize("token", [
    "%%",                                           # outside the alphabet: base64's lenient decoder gives ""
    "!!!", "bW9kZWw", "bW9kZWw=\n", "bW9k ZWw=",    # junk, missing padding, a newline, a space
    "bW9kZWw+", "bW9kZWw/",                         # the standard alphabet's characters, not the URL-safe one
    "/w==",                                         # not UTF-8
    "é", "\x00",
    "A" * 10_000,                                   # far longer than any issued token
])
def test_anything_else_is_invalid_argument_naming_the_field(token):
    with pytest.raises(InvalidArgument) as error:
        page_tokens.decode(token)
    assert error.value.field == "page_token"
