"""The one bounded reader: what it refuses, before or while parsing, and how foreign text is shown."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import untrusted
from appliance.untrusted import Refused


@pytest.mark.parametrize("data, reason", [
    (b"x" * 101, "payload of 101 bytes; at most 100"),
    ("é" * 51, "payload of 102 bytes; at most 100"),
    (b"\xff{}", "not UTF-8 (byte 0xff at offset 0)"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b"[" * 17 + b"]" * 17, "nests 17 levels deep; at most 16"),
    (b"1" + b"0" * 19, "an integer of 20 digits; at most 19"),
    (b"-1" + b"0" * 19, "an integer of 20 digits"),
    (b"1e400", "the number 1e400 is out of range"),
    (b"[NaN]", "NaN is not a JSON number"),
    (b"-Infinity", "-Infinity is not a JSON number"),
    (b'{"a": 1, "a": 1}', "the key a appears twice"),
    (b"{1: 2}", "is not JSON"),
    (b'"unterminated', "is not JSON"),
])
def test_what_load_json_refuses(data, reason):
    with pytest.raises(Refused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        untrusted.load_json(data, 100)


def test_brackets_inside_strings_do_not_count_as_depth():
    assert untrusted.load_json(json.dumps({"a": "[[[[[[[[[[[[[[[[[[[[[[[[[["}).encode(), 1000, max_depth=1) == {
        "a": "[" * 26}


def test_an_unterminated_string_full_of_escaped_quotes_is_read_in_linear_time():
    """A naive string-skipping regex is quadratic on this; the reader must stay linear (4 MiB here)."""
    data = b'"' + b'\\"' * (2 << 20)
    with pytest.raises(Refused, match="is not JSON"):
        untrusted.load_json(data, 8 << 20)


def test_a_file_is_read_through_files_checks(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(Refused, match="is a folder"):
        untrusted.read_json_file(str(tmp_path / "folder"), 100)
    (tmp_path / "big").write_bytes(b"[" + b"1," * 100 + b"1]")
    with pytest.raises(Refused, match="larger than"):
        untrusted.read_json_file(str(tmp_path / "big"), 100)


@pytest.mark.parametrize("check, value, reason", [
    (lambda v: untrusted.text(v, "name", 3), "abcd", "name is 4 characters long; at most 3"),
    (lambda v: untrusted.text(v, "name"), 5, "name must be a string, not a number"),
    (lambda v: untrusted.number(v, "n", 0, 10), True, "n must be a number, not a boolean"),
    (lambda v: untrusted.number(v, "n", 0, 10), 11, "n is 11; it must be within 0 to 10"),
    (lambda v: untrusted.expect_object(v, "it"), [1], "it must be a JSON object, not an array"),
])
def test_the_type_checks_name_what_is_wrong(check, value, reason):
    with pytest.raises(Refused, match=reason):
        check(value)


def test_shown_escapes_control_characters_and_bounds_length():
    assert untrusted.shown("\x1b]0;owned\x07\x1b[2J") == "\\x1b]0;owned\\x07\\x1b[2J"
    assert untrusted.shown("\u202eevil") == "\\u202eevil"
    assert untrusted.shown("é" * 10, 4) == "éééé... (6 more characters)"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_value_or_refused(data):
    try:
        untrusted.load_json(data, 100)
    except Refused:
        pass
