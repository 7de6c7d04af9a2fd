import json
import os
import re

import pytest

from appliance.remote import envelope
from appliance.remote.envelope import Rejected
from conftest import REPO_ROOT

KEY = b"correct horse battery staple"
NOW = 1795320000


def command(**changes):
    document = {"v": 1, "id": "7d0c9a3e-0001", "command": "rebuild", "device": "cam1", "ts": NOW,
                "args": {"precision": "fp16", "force": True}}
    document.update(changes)
    return document


def test_the_worked_example_of_docs_commands_md_is_what_the_code_signs():
    with open(os.path.join(REPO_ROOT, "docs", "commands.md"), encoding="utf-8") as f:
        doc = f.read()
    canonical = re.search(r"```\n(\{\"args\".*\})\n```", doc).group(1)
    expected = re.search(r"SHA2-256\(stdin\)= ([0-9a-f]{64})", doc).group(1)
    assert envelope.canonical(command()).decode("utf-8") == canonical
    assert envelope.sign(command(), KEY)["sig"] == expected


def test_a_signed_command_verifies():
    envelope.verify(envelope.sign(command(), KEY), KEY, "rebuild", "cam1", NOW + 30)
    envelope.verify(envelope.sign(command(device="all"), KEY), KEY, "rebuild", "cam1", NOW)


@pytest.mark.parametrize("signed, topic_command, now, reason", [
    (command(), "rebuild", NOW, "missing signature"),
    (dict(envelope.sign(command(), b"another key")), "rebuild", NOW, "bad signature"),
    (dict(envelope.sign(command(), KEY), args={"precision": "int8", "force": True}), "rebuild", NOW, "bad signature"),
    (dict(envelope.sign(command(), KEY), sig="00"), "rebuild", NOW, "bad signature"),
    (dict(envelope.sign(command(), KEY), sig="é"), "rebuild", NOW, "bad signature"),
    (envelope.sign(command(command="status"), KEY), "rebuild", NOW, "for 'status' but was sent to the 'rebuild'"),
    (envelope.sign(command(device="cam2"), KEY), "rebuild", NOW, "for device 'cam2', not 'cam1'"),
    (envelope.sign(command(), KEY), "rebuild", NOW + 61, "ts is 61 s behind this device's clock"),
    (envelope.sign(command(), KEY), "rebuild", NOW - 61, "ts is 61 s ahead of this device's clock"),
])
def test_what_verify_refuses(signed, topic_command, now, reason):
    with pytest.raises(Rejected, match=re.escape(reason)) as error:
        envelope.verify(signed, KEY, topic_command, "cam1", now)
    assert error.value.command_id == "7d0c9a3e-0001"


def test_without_a_key_no_signature_is_needed():
    envelope.verify(command(), None, "rebuild", "cam1", NOW)


@pytest.mark.parametrize("payload, reason", [
    (b"x" * 4097, "payload of 4097 bytes; at most 4096"),
    (b"{not json", "payload is not JSON"),
    (b"\xff\xfe", "payload is not UTF-8"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"v": 1, "id": "a", "command": "status", "device": "cam1", "ts": NaN}', "NaN is not a JSON number"),
    (b'{"v": 1, "id": "a", "id": "b"}', "the key id appears twice"),
    (b'{"v": 1, "id": "a", "command": "status", "device": "cam1", "ts": 1' + b"0" * 400 + b"}",
     "an integer of 401 digits"),
    (b'{"v": 1, "id": "a", "command": "status", "device": "cam1", "ts": 1e999}', "out of range"),
    (json.dumps(command(ts=-1)).encode(), "ts must be a number of UNIX seconds"),
    (json.dumps(command(ts=1e300)).encode(), "ts must be a number of UNIX seconds"),
    (json.dumps(command(args={"a": {"b": {"c": {}}}})).encode(), "nests 5 levels deep; at most 4"),
    (json.dumps(command(device="cam\x1b[2J")).encode(), "device must be a printable string"),
    (json.dumps(command(command="x" * 65)).encode(), "command must be a printable string of 1 to 64"),
    (json.dumps(dict(command(), sig="A" * 64)).encode(), "sig must be 64 lowercase hex digits"),
    (json.dumps(command(extra=1)).encode(), "unknown field(s): extra"),
    (json.dumps(command(v=2)).encode(), "v must be 1"),
    (json.dumps(command(v=True)).encode(), "v must be 1"),
    (json.dumps(command(id="")).encode(), "id must be"),
    (json.dumps(command(id="x" * 129)).encode(), "id must be"),
    (json.dumps(command(id=5)).encode(), "id must be"),
    (json.dumps(command(command=None)).encode(), "command must be a printable string"),
    (json.dumps(command(device="")).encode(), "device must be a printable string"),
    (json.dumps(command(ts="now")).encode(), "ts must be a number"),
    (json.dumps(command(ts=True)).encode(), "ts must be a number"),
    (json.dumps(command(args=[1])).encode(), "args must be an object"),
    (json.dumps(dict(command(), sig=5)).encode(), "sig must be 64 lowercase hex digits"),
])
def test_what_parse_refuses_before_any_check(payload, reason):
    with pytest.raises(Rejected, match=re.escape(reason)):
        envelope.parse(payload)


@pytest.mark.parametrize("payload", [b"[" * 2000 + b"]" * 2000, b'{"a":' * 600 + b"1" + b"}" * 600])
def test_nesting_deep_enough_to_break_a_parser_is_refused(payload):
    """Refused whichever way this Python's json module meets it (RecursionError before 3.13, a value after)."""
    with pytest.raises(Rejected):
        envelope.parse(payload)


def test_a_rejection_keeps_the_commands_id_when_it_has_one():
    with pytest.raises(Rejected) as error:
        envelope.parse(json.dumps(command(ts="soon")).encode())
    assert error.value.command_id == "7d0c9a3e-0001"


def test_a_refusal_for_ts_gives_both_clocks_and_says_the_devices_may_be_wrong():
    with pytest.raises(Rejected) as error:
        envelope.verify(envelope.sign(command(), KEY), KEY, "rebuild", "cam1", NOW + 150)
    reason = str(error.value)
    assert "150 s behind this device's clock" in reason
    assert "the command's 2026-11-22T04:00:00Z, the device's 2026-11-22T04:02:30Z" in reason
    assert "it may be the device's" in reason


def test_the_overflowing_ts_of_the_report_is_a_rejection_not_a_crash():
    """Issue 18: `"ts":1` and 400 zeros ended the commands thread with OverflowError in math.isfinite."""
    payload = b'{"v":1,"id":"boom","command":"status","device":"all","ts":1' + b"0" * 400 + b',"args":{}}'
    with pytest.raises(Rejected) as error:
        envelope.parse(payload)
    assert "integer of 401 digits" in str(error.value)


def test_args_nested_deep_with_a_current_ts_are_refused_before_signing():
    """Issue 18: args nested ~987 deep made canonical() raise RecursionError in the commands thread."""
    document = command()
    text = json.dumps(document).replace('"args": {', '"args": {"a": ' + "[" * 987 + "]" * 987 + ', ')
    with pytest.raises(Rejected) as error:
        envelope.parse(text.encode())
    assert "levels deep" in str(error.value)
