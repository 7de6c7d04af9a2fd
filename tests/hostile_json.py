"""Hypothesis strategies for hostile JSON texts over the command envelope's grammar (issue 18): huge and
negative integers, floats, NaN spellings, deep nesting at every field, long and non-ASCII strings,
control characters, duplicate keys, byte order marks and bytes that are not UTF-8.

Texts are built by hand, not with json.dumps, so that what no encoder writes (duplicates, NaN, 400-digit
numbers, a BOM) is generated too. Every text stays under MAX_TEXT bytes, so that it reaches facewatch
through a broker that enforces facewatch's MQTT 5 Maximum Packet Size.
"""
import json

from hypothesis import strategies as st

FIELDS = ["v", "id", "command", "device", "ts", "args", "sig"]
MAX_TEXT = 32 * 1024
NUMBER_SPELLINGS = ["NaN", "-NaN", "Infinity", "-Infinity", "nan", "inf", "1e999", "-1e999", "1E400", "0x10",
                    "1.", ".5", "01", "-0", "1e-999", "4.9e-324", "1.7976931348623157e308", "+1", "--1"]


def number_texts():
    return st.one_of(
        st.integers(min_value=-(10 ** 500), max_value=10 ** 500).map(str),
        st.integers(min_value=0, max_value=600).map(lambda zeros: "1" + "0" * zeros),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(NUMBER_SPELLINGS))


def string_texts():
    long_strings = st.tuples(st.sampled_from(["x", "é", "\u202e", "\x1b[2J", "\U0001f600", "\\u0000"]),
                             st.integers(0, 3000)).map(lambda pair: '"' + pair[0] * pair[1] + '"')
    return st.one_of(
        st.text(max_size=40).map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.text(max_size=40).map(json.dumps),
        long_strings,
        st.sampled_from(['"unterminated', '"\\x41"', '"\\ud800"', '"tab\there"']))


def deep_texts():
    return st.tuples(st.sampled_from(["[", '{"a":']), st.integers(1, 3000)).map(
        lambda pair: pair[0] * pair[1] + "0" + ("]" if pair[0] == "[" else "}") * pair[1])


def values(depth=0):
    scalars = st.one_of(number_texts(), string_texts(), st.sampled_from(["true", "false", "null"]), deep_texts())
    if depth >= 2:
        return scalars
    return st.one_of(scalars,
                     st.lists(values(depth + 1), max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
                     objects(depth + 1))


def objects(depth=0, keys=None):
    key_texts = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)).map(
        lambda key: json.dumps(key, ensure_ascii=False)) if keys is None else keys
    return st.lists(st.tuples(key_texts, values(depth)), max_size=9).map(
        lambda pairs: "{" + ",".join("{}:{}".format(k, v) for k, v in pairs) + "}")


def good_field(now, device):
    """A field as a valid command has it, so that generated envelopes get past the first checks."""
    return st.sampled_from([
        '"v":1', '"id":"fuzz-{}"'.format(device), '"command":"status"', '"device":"{}"'.format(device),
        '"device":"all"', '"ts":{}'.format(int(now)), '"args":{}', '"sig":"' + "0" * 64 + '"'])


def envelopes(now, device="testcam"):
    """Envelope-shaped texts: a mix of good fields and hostile ones, in any order, duplicates allowed."""
    hostile_field = st.tuples(st.sampled_from(FIELDS), values()).map(lambda pair: '"{}":{}'.format(*pair))
    body = st.lists(st.one_of(good_field(now, device), hostile_field), max_size=10).map(
        lambda fields: "{" + ",".join(fields) + "}")
    return st.one_of(body, values(), objects())


def payloads(now, device="testcam"):
    """Bytes as a publisher could send them: the texts above, sometimes with a BOM, trailing bytes, or
    encoded as something other than UTF-8."""
    encoded = st.tuples(envelopes(now, device), st.sampled_from(["utf-8", "bom", "latin-1", "utf-16", "trailing"]))

    def encode(pair):
        text, how = pair
        if how == "bom":
            return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
        if how in ("latin-1", "utf-16"):
            return text.encode(how, "replace")
        if how == "trailing":
            return text.encode("utf-8", "surrogatepass") + b"\x00\xff"
        return text.encode("utf-8", "surrogatepass")
    return st.one_of(encoded.map(encode), st.binary(max_size=300)).filter(lambda data: len(data) <= MAX_TEXT)
