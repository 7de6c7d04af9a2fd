"""Every topic and payload facewatch publishes or reads, in one place (SPEC: MQTT)."""
import hashlib
import hmac
import json
import math
import time

SCHEMA_VERSION = 1

ALL_DEVICES = "all"     # PREFIX/all/cmd/NAME: a command to every device
ANY_DEVICE = "+"        # in a subscription: the topic of every device (MQTT's one-level wildcard)
ONLINE = "online"
OFFLINE = "offline"
STOPPED = "stopped"


class Topics:
    """The topics of one device, PREFIX/DEVICE/...; with device ANY_DEVICE, the patterns that match those
    of every device (to subscribe to)."""

    def __init__(self, prefix, device):
        self.prefix = prefix
        self.device = device
        base = "{}/{}".format(prefix, device)
        self.status = base + "/status"
        self.engine = base + "/engine"
        self.detections = base + "/detections"
        self.telemetry = base + "/telemetry"
        self.reply = base + "/reply"
        self.instance = base + "/instance"
        self.snapshot = base + "/snapshot"
        self.everything = base + "/#"
        self.published = (self.status, self.engine, self.detections, self.telemetry, self.reply, self.instance,
                          self.snapshot)
        self.watched = (self.status, self.engine, self.telemetry)   # what `facewatch ctl watch` follows
        self.commands = (self.command("+"), command_topic(prefix, ALL_DEVICES, "+"))

    def command(self, name):
        """PREFIX/DEVICE/cmd/NAME (with DEVICE "all": every device's)."""
        return command_topic(self.prefix, self.device, name)

    def command_target(self, topic):
        """(DEVICE or "all", NAME) for PREFIX/DEVICE/cmd/NAME or PREFIX/all/cmd/NAME; None for others."""
        for target, pattern in zip((self.device, ALL_DEVICES), self.commands):
            head = pattern[:-1]
            if topic.startswith(head) and topic[len(head):] and "/" not in topic[len(head):]:
                return target, topic[len(head):]
        return None


def command_topic(prefix, device, name):
    return "{}/{}/cmd/{}".format(prefix, device, name)


def answering(prefix, target):
    """The Topics whose messages answer a command to `target`: that device's, or for ALL_DEVICES the
    patterns of every device's (PREFIX/+/reply ...)."""
    return Topics(prefix, ANY_DEVICE if target == ALL_DEVICES else target)


def encode(payload):
    """JSON object as UTF-8 bytes, with the schema version. A NaN or infinite number (a sensor's garbage,
    a rate over no time) is published as null, which means unknown: JSON has no NaN."""
    document = {"v": SCHEMA_VERSION}
    document.update(payload)
    try:
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(finite_only(document), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def finite_only(value):
    """`value` with every NaN or infinite number replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_only(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_only(item) for item in value]
    return value


def detections_payload(seq, frame, camera, faces, latency_ms):
    height, width = frame.image.shape[:2]
    return {"ts": round(frame.timestamp, 3), "seq": seq, "frame": frame.index, "camera": camera,
            "width": width, "height": height, "faces": faces, "latency_ms": round(latency_ms, 1)}


ENGINE_FIELDS = ("state", "phase", "progress", "eta_s", "precision", "requested_precision", "backend", "key",
                 "input_shape", "built_at", "build_seconds", "latency_ms", "choice_reason", "fallback_reason", "error")


def engine_payload(**fields):
    unknown = set(fields) - set(ENGINE_FIELDS)
    if unknown:
        raise ValueError("not engine payload fields: {}".format(sorted(unknown)))
    payload = dict.fromkeys(ENGINE_FIELDS)
    payload.update(fields)
    return payload


def instance_payload(instance, host, pid, started, version, key=None):
    """Which process publishes as this device: a second one with the same device_id is told apart by it.
    With the command key, the record is signed (`sig`, HMAC-SHA256 over the canonical JSON of the rest, as a
    command is): a record that is not signed with the key is then known to be no twin's, but a forgery."""
    record = {"instance": instance, "host": host, "pid": pid, "started": round(started, 3), "version": version}
    if key is not None:
        record["sig"] = instance_signature(record, key)
    return record


def instance_signature(record, key):
    """The HMAC-SHA256 (hex) of an instance record without its `sig`, with its schema version, as encoded."""
    unsigned = {name: value for name, value in record.items() if name != "sig"}
    unsigned.setdefault("v", SCHEMA_VERSION)
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def instance_signed_by(document, key):
    """True if the (untrusted, already parsed) record `document` carries the right `sig` for `key`."""
    sig = document.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        expected = instance_signature(document, key)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), sig.encode("utf-8"))


REPLY_STATES = ("accepted", "progress", "done", "failed", "rejected")


def reply_payload(device, command_id, command, state, ok, error=None, **fields):
    """A reply to a command: its id (None when the payload had none), what it was, and how it stands."""
    if state not in REPLY_STATES:
        raise ValueError("not a reply state: {!r}".format(state))
    payload = {"ts": round(time.time(), 3), "device": device, "id": command_id, "command": command,
               "state": state, "ok": ok, "error": error}
    payload.update(fields)
    return payload


def telemetry_payload(uptime, pipeline, camera, engine, mqtt, host, commands, faces=0, snapshot=None,
                      homeassistant=None):
    return {"ts": round(time.time(), 3), "uptime": round(uptime, 1), "fps": pipeline["fps"],
            "processed": pipeline["processed"], "faces": faces, "snapshot": snapshot,
            "homeassistant": homeassistant, "latency_ms": pipeline["latency_ms"],
            "dropped_frames": pipeline["dropped_frames"],
            "inference_paused": pipeline["paused"], "camera": camera, "engine": engine, "mqtt": mqtt,
            "commands": commands, "host": host}

