"""The signed command envelope (docs/commands.md): parsing, checking, signing.

    {"v": 1, "id": "...", "command": "rebuild", "device": "cam1" | "all", "ts": 1795320000, "args": {...},
     "sig": "hex"}

`sig` is HMAC-SHA256, keyed with the key file's bytes (surrounding white space stripped), over the
canonical JSON of the envelope without `sig`: keys sorted, separators "," and ":", UTF-8, no NaN. The
command's name is inside what is signed and must equal the topic's, so a signed `status` cannot be
replayed as a `rebuild`. Every check raises Rejected with the reason a reply carries; nothing is parsed
before the size check.
"""
import hashlib
import hmac
import json
import math

MAX_PAYLOAD_BYTES = 4096
MAX_CLOCK_SKEW = 60.0
MAX_ID_LENGTH = 128
SCHEMA_VERSION = 1
FIELDS = {"v", "id", "command", "device", "ts", "args", "sig"}


class Rejected(Exception):
    """A command that is not executed; str() is the reason sent back. `id` is the command's, if known."""

    def __init__(self, reason, command_id=None):
        super().__init__(reason)
        self.command_id = command_id


def canonical(envelope):
    """The bytes that are signed: the envelope without `sig`, as canonical JSON."""
    unsigned = {key: value for key, value in envelope.items() if key != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signature(envelope, key):
    return hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()


def sign(envelope, key):
    """A copy of `envelope` with its `sig`."""
    signed = dict(envelope)
    signed["sig"] = signature(signed, key)
    return signed


def parse(payload):
    """The envelope in a payload of bytes: size first, then UTF-8 JSON, then each field's type."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("payload of {} bytes; at most {}".format(len(payload), MAX_PAYLOAD_BYTES))
    try:
        envelope = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected("malformed JSON: {}".format(exc))
    if not isinstance(envelope, dict):
        raise Rejected("the payload must be a JSON object")
    command_id = envelope.get("id") if _is_id(envelope.get("id")) else None
    try:
        _check_fields(envelope)
    except Rejected as exc:
        raise Rejected(str(exc), command_id)
    return envelope


def _no_constants(name):
    raise ValueError("{} is not JSON".format(name))


def _is_id(value):
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def _check_fields(envelope):
    unknown = sorted(set(envelope) - FIELDS)
    if unknown:
        raise Rejected("unknown field(s): {}".format(", ".join(unknown)))
    if envelope.get("v") != SCHEMA_VERSION or isinstance(envelope.get("v"), bool):
        raise Rejected("v must be {}".format(SCHEMA_VERSION))
    if not _is_id(envelope.get("id")):
        raise Rejected("id must be a printable string of 1 to {} characters".format(MAX_ID_LENGTH))
    for name in ("command", "device"):
        if not isinstance(envelope.get(name), str) or not envelope[name]:
            raise Rejected("{} must be a non-empty string".format(name))
    ts = envelope.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise Rejected("ts must be a number of UNIX seconds")
    if not isinstance(envelope.get("args", {}), dict):
        raise Rejected("args must be an object")
    if "sig" in envelope and not isinstance(envelope["sig"], str):
        raise Rejected("sig must be a hex string")


def verify(envelope, key, command, device, now):
    """Rejected unless `envelope` is for `command` on `device` (or all), fresh, and signed with `key`
    (None: no key, unsigned commands allowed)."""
    command_id = envelope["id"]
    if envelope["command"] != command:
        raise Rejected("the envelope is for {!r} but was sent to the {!r} topic".format(
            envelope["command"], command), command_id)
    if envelope["device"] not in (device, "all"):
        raise Rejected("the envelope is for device {!r}, not {!r}".format(envelope["device"], device), command_id)
    if abs(now - envelope["ts"]) > MAX_CLOCK_SKEW:
        raise Rejected("ts is {:.0f} s from this device's clock; at most {:.0f} s allowed".format(
            now - envelope["ts"], MAX_CLOCK_SKEW), command_id)
    if key is None:
        return
    if "sig" not in envelope:
        raise Rejected("missing signature", command_id)
    try:
        expected = signature(envelope, key)
    except ValueError as exc:
        raise Rejected("cannot be signed: {}".format(exc), command_id)
    if not hmac.compare_digest(expected.encode("ascii"), envelope["sig"].encode("utf-8")):
        raise Rejected("bad signature", command_id)
