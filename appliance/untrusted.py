"""The one way facewatch reads JSON that someone else could have written: a payload from the broker (a
command, a reply, a retained record, another device's telemetry) or a file in a folder that is not only
ours (the replay record, the Home Assistant record, engine sidecars).

`load_json` checks, in this order, and raises Refused naming the first thing wrong:
1. the size, on the bytes, before anything is decoded;
2. UTF-8 (strict; a byte order mark is refused: RFC 8259 says a sender must not add one);
3. the nesting depth, counted on the text before the parser sees it (the parser would otherwise recurse
   once per level: a few KiB of `[` is a RecursionError in whichever thread reads it);
4. while parsing: integers of at most MAX_INT_DIGITS digits (converting a 4,300-digit number is slow, a
   400-digit one overflows float()), floats that are finite (`1e999` is infinity), no NaN/Infinity
   spellings, no duplicate keys (two readers could see two different objects in one text).
The caller then checks types with the small helpers below (`expect_object`, `text`, `number`, ...), which
raise Refused too. A Refused is a rejected input, never a crash: every reader catches it and says why.
`shown` puts any foreign text into a line a person reads: control characters escaped, length bounded.
"""
import json
import math
import re

from appliance import files

DEFAULT_MAX_DEPTH = 16
MAX_INT_DIGITS = 19           # |n| < 10**19: every int64 and every UNIX time in ms
MAX_NUMBER = 1e18             # the magnitude `number` accepts unless told otherwise
MAX_SHOWN = 200


class Refused(ValueError):
    """Input that is not used; str() says what is wrong with it in words."""


# A string (an unterminated one runs to the end, so the scan stays linear) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.S)


def load_json(data, max_bytes, what="payload", max_depth=DEFAULT_MAX_DEPTH):
    """The JSON value in `data` (bytes, bytearray, memoryview or str), or Refused."""
    size = len(data) if not isinstance(data, str) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise Refused("{} of {} bytes; at most {}".format(what, size, max_bytes))
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused("{} is not UTF-8 (byte {} at offset {})".format(what, hex(bytes(data)[exc.start]),
                                                                          exc.start))
    if text.startswith("\ufeff"):
        raise Refused("{} starts with a byte order mark, which JSON does not allow".format(what))
    depth = nesting_depth(text)
    if depth > max_depth:
        raise Refused("{} nests {} levels deep; at most {}".format(what, depth, max_depth))
    try:
        return json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_constant,
                          object_pairs_hook=_object)
    except Refused as exc:
        raise Refused("{}: {}".format(what, exc))
    except (ValueError, RecursionError) as exc:   # json's own errors (JSONDecodeError is a ValueError)
        raise Refused("{} is not JSON: {}".format(what, exc))


def read_json_file(path, max_bytes, what=None, max_depth=DEFAULT_MAX_DEPTH):
    """The JSON value in regular file `path`, read through files' checks; Refused naming the path."""
    try:
        data = files.read_regular_file(path, max_bytes)
    except files.FileRefused as exc:
        raise Refused(str(exc))
    return load_json(data, max_bytes, what or path, max_depth)


def nesting_depth(text):
    """How deep arrays and objects nest in JSON `text` (strings skipped); linear, no recursion."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _integer(digits):
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused("an integer of {} digits; at most {}".format(len(digits.lstrip("-")), MAX_INT_DIGITS))
    return int(digits)


def _float(spelling):
    value = float(spelling)
    if not math.isfinite(value):
        raise Refused("the number {} is out of range".format(shown(spelling, 40)))
    return value


def _constant(name):
    raise Refused("{} is not a JSON number".format(name))


def _object(pairs):
    document = {}
    for key, value in pairs:
        if key in document:
            raise Refused("the key {} appears twice in one object".format(shown(key, 40)))
        document[key] = value
    return document


# --- types, after load_json -----------------------------------------------------------------------------

def expect_object(value, what="payload"):
    if not isinstance(value, dict):
        raise Refused("{} must be a JSON object, not {}".format(what, kind(value)))
    return value


def text(value, what, max_length=MAX_SHOWN, allow_empty=False):
    """A string of at most max_length characters."""
    if not isinstance(value, str):
        raise Refused("{} must be a string, not {}".format(what, kind(value)))
    if not value and not allow_empty:
        raise Refused("{} must not be empty".format(what))
    if len(value) > max_length:
        raise Refused("{} is {} characters long; at most {}".format(what, len(value), max_length))
    return value


def number(value, what, low=-MAX_NUMBER, high=MAX_NUMBER):
    """A finite int or float (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused("{} must be a number, not {}".format(what, kind(value)))
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused("{} must be a finite number".format(what))
    if not low <= value <= high:
        raise Refused("{} is {}; it must be within {:g} to {:g}".format(what, shown(value, 40), low, high))
    return value


def optional(check, value, *args, **kwargs):
    """None, or what check(value, ...) accepts."""
    return None if value is None else check(value, *args, **kwargs)


def kind(value):
    """A JSON value's kind in words, for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shown(value, limit=MAX_SHOWN):
    """Any value from outside as it may appear in a line a person reads (a terminal, a log, a reply):
    control and other non-printable characters escaped as \\xNN/\\uNNNN, at most `limit` characters,
    a cut marked with how much was left out."""
    text_value = value if isinstance(value, str) else repr(value)
    cut = len(text_value) - limit
    if cut > 0:
        text_value = text_value[:limit]
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text_value)
    return escaped + ("... ({} more characters)".format(cut) if cut > 0 else "")
