"""What devices publish for `facewatch ctl`, read as input from strangers: replies to a command and the
status, engine and telemetry topics `watch` follows.

A device is known by the topic a message came on (PREFIX/DEVICE/reply), never by what the payload says:
under the per-device ACLs any device may publish only on its own topics, while its payload may claim
anything. Every payload goes through untrusted.load_json with a bound; every field ctl uses is checked
here. A reply about our command that is not a valid reply is a Reply with a `problem` (shown as "not
understood" and counted as a failure), never an exception in ctl.
"""
import re

from appliance.mqtt import topics as contract
from appliance.untrusted import Refused, expect_object, kind, load_json, number, optional, shown, text

MAX_MESSAGE_BYTES = 256 * 1024     # a reply or telemetry message; a status reply is a few KiB
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 64 * 1024   # MQTT 5 Maximum Packet Size: the payload, topic, header
MAX_DEPTH = 32
MAX_TS = 1e11                      # UNIX seconds (year 5138)
MAX_REASON = MAX_MESSAGE_BYTES     # free text (an error, a reason) may be long; shown() cuts it for display
REPLY_STATES = contract.REPLY_STATES
FINAL_STATES = ("done", "failed", "rejected")
NOT_UNDERSTOOD = "not understood"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_TS_FIELD = re.compile(r"\bts\b")


class Reply(object):
    """A reply to our command from `device` (its topic's): `document` once checked, or `problem` (why it
    is not understood; document is then None)."""
    __slots__ = ("device", "document", "problem")

    def __init__(self, device, document=None, problem=None):
        self.device, self.document, self.problem = device, document, problem

    @property
    def state(self):
        return NOT_UNDERSTOOD if self.problem else self.document["state"]

    @property
    def final(self):
        return self.problem is not None or self.state in FINAL_STATES

    def about_ts(self):
        """A rejection for the command's ts (the clocks disagree)."""
        return self.state == "rejected" and bool(_TS_FIELD.search(self.document["error"]))


def device_of(topic, prefix, kind_name):
    """DEVICE of PREFIX/DEVICE/KIND, or None for any other topic."""
    head, tail = prefix + "/", "/" + kind_name
    if not (topic.startswith(head) and topic.endswith(tail)) or len(topic) <= len(head) + len(tail):
        return None
    device = topic[len(head):-len(tail)]
    return None if "/" in device else device


def read_reply(topic, payload, prefix, sent):
    """The Reply on `topic` to the command `sent` (client.Sent), or None when the message is no reply to
    it (another command's, or not on a reply topic). A payload that cannot be read at all, its id neither,
    is a reply of its device that is not understood: a device publishes nothing but replies there."""
    device = device_of(topic, prefix, "reply")
    if device is None:
        return None
    try:
        document = expect_object(load_json(payload, MAX_MESSAGE_BYTES, "reply", MAX_DEPTH), "the reply")
    except Refused as exc:
        return Reply(device, problem=str(exc))
    command_id = document.get("id")
    if command_id is not None and not isinstance(command_id, str):
        return Reply(device, problem="id must be a string or null, not {}".format(kind(command_id)))
    if command_id != sent.id and not (command_id is None and document.get("payload_sha256") == sent.sha256):
        return None
    try:
        check_reply(document, device, sent.command)
        if command_id is None and document["state"] != "rejected":
            raise Refused("a {} reply without an id".format(document["state"]))
    except Refused as exc:
        return Reply(device, problem=str(exc))
    return Reply(device, document)


def check_reply(document, device, command):
    """Refused unless `document` is a reply of `device` to `command` that makes sense."""
    if document.get("v") != contract.SCHEMA_VERSION or isinstance(document.get("v"), bool):
        raise Refused("v must be {}, not {}".format(contract.SCHEMA_VERSION, shown(document.get("v"), 40)))
    number(document.get("ts"), "ts", 0, MAX_TS)
    claimed = text(document.get("device"), "device", allow_empty=True)
    if claimed != device:
        raise Refused("it says it is from device {} but came on {}'s reply topic".format(
            shown(repr(claimed), 60), shown(device, 60)))
    if text(document.get("command"), "command") != command:
        raise Refused("it answers {}, not {}".format(shown(repr(document["command"]), 60), command))
    state = document.get("state")
    if state not in REPLY_STATES:
        raise Refused("state must be one of {}, not {}".format(", ".join(REPLY_STATES), shown(state, 40)))
    if not isinstance(document.get("ok"), bool) or document["ok"] != (state not in ("failed", "rejected")):
        raise Refused("ok is {} in a {} reply".format(shown(document.get("ok"), 40), state))
    if state in ("failed", "rejected") or document.get("error") is not None:
        text(document.get("error"), "error", MAX_REASON, allow_empty=True)
    if document.get("payload_sha256") is not None and not _SHA256.match(str(document["payload_sha256"])):
        raise Refused("payload_sha256 must be 64 lower-case hex digits")
    CHECKS.get((command, state), lambda document: None)(document)


def _accepted_rebuild(document):
    for name in ("precision", "mode"):
        text(document.get(name), name)
    for name in ("mode_reason", "inference"):
        optional(text, document.get(name), name, MAX_REASON)


def _progress(document):
    optional(text, document.get("phase"), "phase")   # fraction and eta_s: progress_problem()


def _done_rebuild(document):
    for name in ("precision", "key"):
        text(document.get(name), name)
    if not isinstance(document.get("built"), bool):
        raise Refused("built must be a boolean, not {}".format(kind(document.get("built"))))
    optional(text, document.get("fallback_reason"), "fallback_reason", MAX_REASON)


def _done_status(document):
    check_status(expect_object(document.get("status"), "status"), "status")


def _done_snapshot(document):
    text(document.get("topic"), "topic", 65535)
    size = document.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int):
        raise Refused("bytes must be an integer, not {}".format(kind(size)))
    number(size, "bytes", 0, 1 << 40)


CHECKS = {("rebuild", "accepted"): _accepted_rebuild, ("rebuild", "progress"): _progress,
          ("rebuild", "done"): _done_rebuild, ("status", "done"): _done_status,
          ("snapshot", "done"): _done_snapshot}


def progress_problem(document):
    """Why a progress reply's fraction (a finite number in [0, 1]) or eta_s (a finite number >= 0, or
    null) cannot be shown, or None."""
    try:
        number(document.get("fraction"), "fraction", 0.0, 1.0)
        optional(number, document.get("eta_s"), "eta_s", 0.0)
    except Refused as exc:
        return str(exc)
    return None


# --- a status (a telemetry message's content) ---------------------------------------------------------

# The fields a status line shows, and the type each must have when present (null: not known).
STATUS_FIELDS = ((("phase",), "text"), (("engine", "state"), "text"), (("engine", "backend"), "text"),
                 (("engine", "precision"), "text"), (("camera", "state"), "text"), (("fps", "capture"), "number"),
                 (("fps", "inference"), "number"), (("latency_ms", "inference", "p50"), "number"),
                 (("mqtt", "connected"), "boolean"), (("uptime",), "number"))


def check_status(status, what):
    """Refused unless every field a status line shows is of its type, or null, or absent."""
    for path, type_name in STATUS_FIELDS:
        value = field(status, path, what)
        name = "{}.{}".format(what, ".".join(path))
        if value is None:
            continue
        if type_name == "text":
            text(value, name, allow_empty=True)
        elif type_name == "number":
            number(value, name)
        elif not isinstance(value, bool):
            raise Refused("{} must be a boolean, not {}".format(name, kind(value)))


def field(document, path, what="status"):
    """document[path[0]][path[1]]...; None where a level is absent or null; Refused where one is not an
    object."""
    value = document
    for depth, name in enumerate(path):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise Refused("{} must be an object, not {}".format(".".join((what,) + path[:depth]), kind(value)))
        value = value.get(name)
    return value


# --- what `watch` follows -------------------------------------------------------------------------------

MAX_STATUS_CHARACTERS = 64


def read_watched(kind_name, payload):
    """A message on PREFIX/DEVICE/status (its text) or on .../engine or .../telemetry (a JSON object, the
    engine's `state` a string); Refused saying what is wrong."""
    if kind_name == "status":
        return status_text(payload)
    document = expect_object(load_json(payload, MAX_MESSAGE_BYTES, kind_name, MAX_DEPTH), kind_name)
    if kind_name == "telemetry":
        check_status(document, "telemetry")
    elif kind_name == "engine":
        text(document.get("state"), "state")
        for name in ("phase", "precision"):
            optional(text, document.get(name), name)
        optional(text, document.get("error"), "error", MAX_REASON, allow_empty=True)
    return document


def status_text(payload):
    if len(payload) > MAX_STATUS_CHARACTERS * 4:
        raise Refused("status of {} bytes; at most {}".format(len(payload), MAX_STATUS_CHARACTERS * 4))
    try:
        value = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("status is not UTF-8")
    if not value.isprintable():
        raise Refused("status {} has control characters".format(shown(value)))
    return text(value, "status", MAX_STATUS_CHARACTERS, allow_empty=True)
