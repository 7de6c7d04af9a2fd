"""The signed command envelope (docs/commands.md): parsing, checking, signing.

    {"v": 1, "id": "...", "command": "rebuild", "device": "cam1" | "all", "ts": 1795320000, "args": {...},
     "sig": "hex"}

`sig` is HMAC-SHA256, keyed with the key file's bytes (surrounding white space stripped), over the
canonical JSON of the envelope without `sig`: keys sorted, separators "," and ":", UTF-8, no NaN. The
command's name is inside what is signed and must equal the topic's, so a signed `status` cannot be
replayed as a `rebuild`. Every check raises Rejected with the reason a reply carries. The payload is read
by the one bounded reader (appliance.untrusted): size before decoding, depth before parsing, no huge
integers, no NaN, no duplicate keys; then every field's type and range.
"""
import hashlib
import hmac
import json
import time

from appliance import untrusted

MAX_PAYLOAD_BYTES = 4096
MAX_CLOCK_SKEW = 60.0
MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 64          # a command's name
MAX_DEVICE_LENGTH = 256       # characters; config bounds device ids further, in bytes
MAX_DEPTH = 4                 # the envelope, args, and two levels inside an arg
MAX_TS = 1e11                 # UNIX seconds (year 5138): a ts beyond is garbage, not a clock
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
    try:
        envelope = untrusted.load_json(payload, MAX_PAYLOAD_BYTES, "payload", MAX_DEPTH)
    except untrusted.Refused as exc:
        raise Rejected(str(exc))
    if not isinstance(envelope, dict):
        raise Rejected("the payload must be a JSON object, not {}".format(untrusted.kind(envelope)))
    command_id = envelope.get("id") if _is_id(envelope.get("id")) else None
    try:
        _check_fields(envelope)
    except Rejected as exc:
        raise Rejected(str(exc), command_id)
    return envelope


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
    for name, limit in (("command", MAX_NAME_LENGTH), ("device", MAX_DEVICE_LENGTH)):
        value = envelope.get(name)
        if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
            raise Rejected("{} must be a printable string of 1 to {} characters".format(name, limit))
    ts = envelope.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= MAX_TS:
        raise Rejected("ts must be a number of UNIX seconds (0 to {:.0f})".format(MAX_TS))
    if not isinstance(envelope.get("args", {}), dict):
        raise Rejected("args must be an object")
    sig = envelope.get("sig")
    if "sig" in envelope and not (isinstance(sig, str) and len(sig) == 64 and
                                  all(c in "0123456789abcdef" for c in sig)):
        raise Rejected("sig must be 64 lowercase hex digits (HMAC-SHA256)")


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
        raise Rejected(clock_refusal(envelope["ts"], now), command_id)
    if key is None:
        return
    if "sig" not in envelope:
        raise Rejected("missing signature", command_id)
    try:
        expected = signature(envelope, key)
    except (ValueError, RecursionError) as exc:   # parse() bounds depth and numbers; this is the last guard
        raise Rejected("cannot be signed: {}".format(exc), command_id)
    if not hmac.compare_digest(expected.encode("ascii"), envelope["sig"].encode("utf-8")):
        raise Rejected("bad signature", command_id)


def clock_refusal(ts, now):
    """Why a command's ts is refused, with both clocks: on a Jetson without network time, the device's
    clock is as likely to be the wrong one."""
    difference = ts - now
    return ("ts is {:.0f} s {} this device's clock (the command's {}, the device's {}); at most {:.0f} s is "
            "allowed. One of the two clocks is wrong, and it may be the device's: check its time "
            "synchronisation (facewatch doctor)").format(
        abs(difference), "ahead of" if difference > 0 else "behind", utc(ts), utc(now), MAX_CLOCK_SKEW)


def utc(seconds):
    """UNIX seconds as an ISO 8601 UTC time a person reads."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, ValueError, OSError):
        return "{:.0f} UNIX seconds".format(seconds)
