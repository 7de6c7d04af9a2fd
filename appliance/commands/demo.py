"""`facewatch demo`: the whole daemon on the bundled clip, CPU backend, no camera needed.

The daemon publishes to a private MQTT broker started on 127.0.0.1 for this run (mosquitto when installed,
else amqtt: appliance.commands.demo_broker) or to --broker HOST:PORT; a subscriber in the same process prints what
arrives. At the end it writes the frame with the most faces, annotated, and scores the detections against
the clip's ground truth.
"""
import json
import os
import sys
import threading
import time

from appliance import untrusted
from appliance.commands import arguments
from appliance.errors import FacewatchError
from appliance.config.paths import shown_home, user_cache_dir

DEMO_DEVICE = "demo"
MAX_SHOWN_MESSAGE = 1 << 20   # a message on the watched topics; another publisher's larger one is refused


def add_arguments(parser):
    parser.add_argument("--broker", metavar="HOST:PORT", type=arguments.host_port,
                        help="use this MQTT broker instead of starting a private one (mosquitto, else amqtt)")
    parser.add_argument("--out", default="facewatch-demo.jpg", type=arguments.path,
                        help="annotated image to write (default %(default)s)")
    parser.add_argument("--loop", action="store_true", help="replay the clip until Ctrl-C")
    parser.add_argument("--threads", type=arguments.THREADS, default=0,
                        help="ONNX Runtime threads per inference thread, 0..256 (default 0: as engine.threads)")
    parser.add_argument("--cache-dir", metavar="DIR", type=arguments.library_path,
                        help="engine cache (default: {})".format(shown_home(user_cache_dir())))




def run(args):
    from appliance.commands import demo_broker
    from appliance.daemon.app import App
    from appliance.commands.run import ignore_late_signals, install_stop_handlers
    from appliance.images import annotate, check_image_destination, write_image
    from appliance.manifest import find_media_dir

    check_image_destination(args.out, "--out")
    cache_dir = os.path.abspath(args.cache_dir or user_cache_dir())
    clip_dir = find_media_dir("demo")
    clip = os.path.join(clip_dir, "clip.avi")
    print("facewatch demo: clip {}".format(clip))
    broker = watcher = None
    try:
        if args.broker:
            host, port = args.broker
            print("facewatch demo: broker {}:{} (--broker)".format(host, port))
        else:
            broker = demo_broker.start()
            host, port = broker.host, broker.port
            print("facewatch demo: broker {}".format(broker.describe()))
        sys.stdout.flush()
        config = demo_config(args, clip, host, port, cache_dir)
        best = BestFrame()
        stop_event = threading.Event()
        install_stop_handlers(stop_event)
        app = App(config, stop_event, listeners=[best.consider])
        watcher = Watcher(config, host, int(port))
        app.run(until=None if args.loop else app.source_exhausted)
    finally:
        ignore_late_signals()
        if watcher:
            watcher.close()
        if broker:
            broker.stop()
    if args.broker:
        print(clear_retained(config.mqtt.prefix, host, int(port)))
    summarise(best, watcher, os.path.join(clip_dir, "clip.json"))
    if best.result is not None:
        write_image(args.out, annotate(best.result.frame.image, best.result.detections))
        print("facewatch demo: wrote {} (the frame with the most faces, annotated: {} faces, frame {})".format(
            args.out, len(best.result.detections.boxes), best.result.frame.index))
    else:
        print("facewatch demo: no frame was processed: {} not written".format(args.out))
    if best.boxes_by_frame and not watcher.counts.get("detections"):
        raise FacewatchError("{} frames were processed but no detections message came back through the broker "
                             "at {}:{}".format(len(best.boxes_by_frame), host, port))
    return 0


def demo_config(args, clip, host, port, cache_dir):
    from appliance.config import schema as configuration
    return configuration.build({
        "camera": {"source": clip, "loop": args.loop, "realtime": args.loop},
        "mqtt": {"host": host, "port": int(port), "device_id": DEMO_DEVICE, "protocol": "3.1.1"},
        "telemetry": {"interval": 1.0},
        "engine": {"backend": "onnxruntime", "threads": args.threads, "cache_dir": cache_dir},
        "commands": {"state_dir": os.path.join(cache_dir, "demo-state")},   # never beside whatever --cache-dir is
    }, path=None)


CLEAR_TIMEOUT = 10.0   # seconds for the broker to take the empty retained messages


def clear_retained(prefix, host, port):
    """Empty retained messages (MQTT: they delete the retained ones) on every topic the demo's daemon left
    retained on a broker of the user's (status, engine, snapshot: a JPEG of ~50 KB, instance); the line
    that says so, or why it could not."""
    from appliance.mqtt.link import make_paho_client
    from appliance.mqtt.topics import Topics
    topics = Topics(prefix, DEMO_DEVICE)
    retained = [topics.status, topics.engine, topics.snapshot, topics.instance]
    client = make_paho_client("facewatch-demo-clear-" + os.urandom(6).hex())
    try:
        client.connect(host, port, 30)
        client.loop_start()
        sent = [client.publish(topic, b"", qos=1, retain=True) for topic in retained]
        deadline = time.monotonic() + CLEAR_TIMEOUT
        for info in sent:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not all(info.is_published() for info in sent):
            raise OSError("the broker did not confirm them within {:.0f} s".format(CLEAR_TIMEOUT))
    except (OSError, ValueError, RuntimeError) as exc:
        return "facewatch demo: could not remove the retained messages it left on {}:{} ({}): {}; remove them " \
               "with: mosquitto_pub -h {} -p {} -r -n -t TOPIC (mosquitto-clients)".format(host, port, ", ".join(retained), exc, host,
                                                                     port)
    finally:
        client.disconnect()
        client.loop_stop()
    return "facewatch demo: removed the retained messages it left on {}:{} ({})".format(
        host, port, ", ".join(retained))


class BestFrame:
    """Keeps the processed frame with the most faces, and every frame's boxes for scoring."""

    def __init__(self):
        self.result = None
        self.boxes_by_frame = {}

    def consider(self, result):
        self.boxes_by_frame[result.frame.index] = result.detections.boxes
        if self.result is None or len(result.detections.boxes) > len(self.result.detections.boxes):
            self.result = result


class Watcher:
    """An MQTT subscriber that prints what the daemon publishes (retained messages left by earlier runs are
    shown but not counted)."""

    def __init__(self, config, host, port):
        from appliance.mqtt.topics import Topics
        from appliance.remote.client import Controller
        self.counts = {}
        self._controller = Controller(host, port, config.mqtt.prefix, protocol="3.1.1", on_message=self._on_message)
        self._controller.subscribe([Topics(config.mqtt.prefix, DEMO_DEVICE).everything])

    def _on_message(self, topic, payload, retained):
        kind = topic.rsplit("/", 1)[-1]
        if not retained:
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "snapshot":  # a JPEG, not text
            print("  [snapshot]   annotated JPEG, {} bytes{}".format(
                len(payload), " (retained from an earlier run)" if retained else ""))
            return
        if kind == "status":
            print("  [status]     {}".format(untrusted.shown(payload.decode("utf-8", "replace"), 80)))
            return
        try:
            self._show(kind, untrusted.load_json(payload, MAX_SHOWN_MESSAGE, kind))
        except (ValueError, KeyError, TypeError, AttributeError):  # another publisher's message on --broker
            print("  [{}] a message facewatch did not write ({} bytes)".format(kind, len(payload)))

    def _show(self, kind, document):
        if kind == "engine":
            print("  [engine]     {} backend={} precision={}{}".format(
                document["state"], document["backend"], document["precision"], ready_details(document)))
        elif kind == "detections" and document["seq"] % 10 == 1:
            print("  [detections] frame {:3d}: {} face(s), latency {:.0f} ms".format(
                document["frame"], len(document["faces"]), document["latency_ms"]))
        elif kind == "telemetry":
            inference = document["latency_ms"].get("inference", {})
            print("  [telemetry]  fps capture {} inference {}, inference p50 {} ms, camera {}, dropped {}".format(
                document["fps"]["capture"], document["fps"]["inference"], inference.get("p50"),
                document["camera"]["state"], ", ".join("{} {}".format(cause, count) for cause, count in
                                                        sorted(document["dropped_frames"].items()))))

    def close(self):
        self._controller.close()


def ready_details(document):
    """For a ready engine: its input size, measured latency and why it was chosen."""
    if document["state"] != "ready" or not document.get("input_shape"):
        return ""
    _, _, height, width = document["input_shape"]
    latency = document.get("latency_ms")
    return " input={}x{} latency={} ms\n               {}".format(
        width, height, "?" if latency is None else "{:.2f}".format(latency), document.get("choice_reason"))


def summarise(best, watcher, truth_path):
    from appliance.engine.evaluation import match_counts
    with open(truth_path) as f:
        truth = {frame["frame"]: frame["faces"] for frame in json.load(f)["frames"]}
    frames = [(best.boxes_by_frame[i], truth[i]) for i in sorted(best.boxes_by_frame) if i in truth]
    print("facewatch demo: {} frames processed, {} messages received ({})".format(
        len(best.boxes_by_frame), sum(watcher.counts.values()),
        ", ".join("{} {}".format(v, k) for k, v in sorted(watcher.counts.items()))))
    if not frames:
        print("facewatch demo: against the clip's ground truth: n/a (no frame was processed)")
        return
    scored = match_counts(frames)
    print("facewatch demo: against the clip's ground truth: recall {:.3f}, precision {:.3f} at IoU 0.5 over {} "
          "frames".format(scored.recall, scored.precision, len(frames)))
