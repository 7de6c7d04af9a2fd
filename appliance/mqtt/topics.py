"""Every topic and payload facewatch publishes or reads, in one place (SPEC: MQTT)."""
import json
import time

SCHEMA_VERSION = 1

ONLINE = "online"
OFFLINE = "offline"
STOPPED = "stopped"


class Topics:
    def __init__(self, prefix, device):
        self.prefix = prefix
        self.device = device
        base = "{}/{}".format(prefix, device)
        self.status = base + "/status"
        self.engine = base + "/engine"
        self.detections = base + "/detections"
        self.telemetry = base + "/telemetry"
        self.reply = base + "/reply"
        self.commands = (base + "/cmd/+", "{}/all/cmd/+".format(prefix))

    def command_name(self, topic):
        """`rebuild` for PREFIX/DEVICE/cmd/rebuild or PREFIX/all/cmd/rebuild; None for others."""
        for pattern in self.commands:
            head = pattern[:-1]
            if topic.startswith(head) and "/" not in topic[len(head):]:
                return topic[len(head):]
        return None


def encode(payload):
    """JSON object as UTF-8 bytes, with the schema version."""
    document = {"v": SCHEMA_VERSION}
    document.update(payload)
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def detections_payload(seq, frame, camera, faces, latency_ms):
    height, width = frame.image.shape[:2]
    return {"ts": round(frame.timestamp, 3), "seq": seq, "frame": frame.index, "camera": camera,
            "width": width, "height": height, "faces": faces, "latency_ms": round(latency_ms, 1)}


ENGINE_FIELDS = ("state", "phase", "progress", "eta_s", "precision", "requested_precision", "backend", "key",
                 "built_at", "build_seconds", "fallback_reason", "error")


def engine_payload(**fields):
    unknown = set(fields) - set(ENGINE_FIELDS)
    if unknown:
        raise ValueError("not engine payload fields: {}".format(sorted(unknown)))
    payload = dict.fromkeys(ENGINE_FIELDS)
    payload.update(fields)
    return payload


def telemetry_payload(uptime, pipeline, camera, engine, mqtt, host):
    return {"ts": round(time.time(), 3), "uptime": round(uptime, 1), "fps": pipeline["fps"],
            "latency_ms": pipeline["latency_ms"], "dropped_frames": pipeline["dropped_frames"],
            "camera": camera, "engine": engine, "mqtt": mqtt, "host": host}

