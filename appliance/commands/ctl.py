"""`facewatch ctl [BROKER OPTIONS] rebuild|status|snapshot|watch DEVICE|all`: the operator's remote control.

Signs a command with the key (--key-file, or commands.key_file of --config), sends it, and shows the
replies: a progress bar for a rebuild of one device, one line per device for `all`. Exit 0 when done,
1 when it failed or no reply came in time (said so), 2 when rejected or on bad usage; with `all`, the
worst of the devices that answered. `watch` follows status, engine and telemetry until Ctrl-C.

Devices are strangers here: a device is known by its topic, every reply is checked (appliance/remote/
replies.py) and a reply that makes no sense is shown as "DEVICE: reply not understood: WHY" and counts
as a failure; text from a device is escaped and cut before it is printed. A device's clock more than
SKEW_SHOWN s from ours (or a refusal for `ts`) is said on stderr. A command too large for a device is
refused here, before it is sent (exit 2).
"""
import json
import sys
import time

from appliance.backends import PRECISION_CHOICES
from appliance.commands import arguments
from appliance.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from appliance.mqtt.topics import ALL_DEVICES, Topics, answering
from appliance.untrusted import shown

DEFAULT_TIMEOUTS = {"rebuild": 3600.0, "status": 10.0, "snapshot": 10.0}
SETTLE_SECONDS = 2.0    # with `all`: stop once every device that answered is final and none new came for this long
EXIT_BY_STATE = {"done": EXIT_OK, "failed": EXIT_FAILURE, "rejected": EXIT_USAGE, "not understood": EXIT_FAILURE}
SKEW_SHOWN = 10.0       # a reply's ts further than this from our clock: say how far the device's clock is
SHOWN_ERROR = 300       # characters of a device's error (or reason) printed; the rest is said to be cut
SHOWN_NAME = 64


def add_arguments(parser):
    parser.add_argument("--config", metavar="PATH", type=arguments.path,
                        help="take the broker, prefix and key from this facewatch configuration")
    parser.add_argument("--host", type=arguments.host_name, help="MQTT broker (default: --config's, else localhost)")
    parser.add_argument("--port", type=arguments.bounded_int(1, 65535), help="default: --config's, else 1883")
    parser.add_argument("--prefix", type=arguments.topic_prefix, help="topic prefix (default: --config's, else "
                        "facewatch)")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], help="MQTT version (default: --config's, else 5)")
    parser.add_argument("--username", help="broker user name")
    parser.add_argument("--password-file", metavar="PATH", type=arguments.path, help="file holding the password")
    parser.add_argument("--tls-ca", metavar="PATH", type=arguments.path, help="CA bundle (PEM): TLS on")
    parser.add_argument("--tls-cert", metavar="PATH", type=arguments.path, help="client certificate (PEM)")
    parser.add_argument("--tls-key", metavar="PATH", type=arguments.path, help="client key (PEM)")
    parser.add_argument("--key-file", metavar="PATH", type=arguments.path,
                        help="the command key (default: commands.key_file of --config); none: unsigned")
    parser.add_argument("--timeout", type=arguments.positive_seconds,
                        help="seconds to wait for the outcome (default: rebuild 3600, status and snapshot 10)")
    parser.add_argument("--json", action="store_true", help="print every reply or message as one JSON line")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    rebuild = actions.add_parser("rebuild", help="build and swap in a new engine")
    rebuild.add_argument("--precision", choices=PRECISION_CHOICES,
                         help="default: the device's engine.precision")
    rebuild.add_argument("--force", action="store_true", help="build even if a valid engine is cached")
    actions.add_parser("status", help="engine, camera, pipeline and host of each device")
    actions.add_parser("snapshot", help="publish the latest frame, annotated, on PREFIX/DEVICE/snapshot now")
    actions.add_parser("watch", help="follow status, engine and telemetry until Ctrl-C")
    for action in actions.choices.values():
        action.add_argument("target", metavar="DEVICE|all", type=arguments.device_or_all)


def run(args):
    from appliance.errors import UsageError
    if not args.action:
        raise UsageError("say what to do: facewatch ctl rebuild|status|snapshot|watch DEVICE|all")
    settings, key = connection_settings(args)
    from appliance.remote.client import Controller
    controller = Controller(**settings)
    try:
        if args.action == "watch":
            return watch(controller, args)
        if key is None:
            print("facewatch ctl: no command key given (--key-file): sending unsigned, which a device refuses "
                  "unless its commands.allow_unsigned is true", file=sys.stderr)
        command_args = rebuild_args(args) if args.action == "rebuild" else {}
        sent = controller.send(args.action, args.target, command_args, key)
        deadline = time.monotonic() + (args.timeout or DEFAULT_TIMEOUTS[args.action])
        follow = follow_fleet if args.target == ALL_DEVICES else follow_one
        code = follow(controller, sent, deadline, args)
        if controller.inbox.dropped:
            print("facewatch ctl: {} messages were dropped unread: more came at once than ctl holds".format(
                controller.inbox.dropped), file=sys.stderr)
        return code
    finally:
        controller.close()


def rebuild_args(args):
    command_args = {"force": args.force}
    if args.precision:
        command_args["precision"] = args.precision
    return command_args


def connection_settings(args):
    """(Controller keyword arguments, command key or None) from --config and the broker options."""
    from appliance.config import schema as configuration
    base = configuration.load(args.config, required=True) if args.config else configuration.defaults()
    mqtt = base.mqtt
    password_file = args.password_file or mqtt.password_file
    username = args.username if args.username is not None else mqtt.username
    key_file = args.key_file or base.commands.key_file
    settings = {"host": args.host or mqtt.host, "port": args.port or mqtt.port, "prefix": args.prefix or mqtt.prefix,
                "protocol": args.protocol or mqtt.protocol, "username": username,
                "password": configuration.read_secret(password_file, "--password-file") if password_file else None,
                "tls_ca": args.tls_ca or mqtt.tls_ca, "tls_cert": args.tls_cert or mqtt.tls_cert,
                "tls_key": args.tls_key or mqtt.tls_key, "keepalive": mqtt.keepalive}
    return settings, (configuration.read_secret(key_file, "--key-file") if key_file else None)


def follow_one(controller, sent, deadline, args):
    from appliance.commands.progress import ProgressBar
    bar, clocks = ProgressBar(), Clocks()
    try:
        for reply in controller.replies(sent, deadline):
            clocks.check(reply)
            if reply.state == "progress" and not args.json:
                show_progress(bar, reply.document)
                continue
            bar.finish()
            print(reply_line(reply, args.json), flush=True)
            if reply.final:
                return EXIT_BY_STATE[reply.state]
    finally:
        bar.finish()
    print("facewatch ctl: no {} from {} within {:.0f} s (is it online? see {})".format(
        "outcome" if args.action == "rebuild" else "reply", args.target, args.timeout or DEFAULT_TIMEOUTS[args.action],
        Topics(controller.prefix, args.target).status), file=sys.stderr)
    return EXIT_FAILURE


def show_progress(bar, document):
    from appliance.remote.replies import progress_problem
    label = document.get("phase") or "building"
    problem = progress_problem(document)
    if problem:
        bar.unreadable(label, problem)
    else:
        bar.update(label, document["fraction"], document.get("eta_s"))


def follow_fleet(controller, sent, deadline, args):
    """One line per device and state change; ends when every device that answered is final and no new
    one answered for SETTLE_SECONDS, or at the deadline. The exit code is the worst device's; a device
    once not understood stays a failure."""
    states, clocks = {}, Clocks()
    last_new = time.monotonic()
    def settled():
        return bool(states) and all(s in EXIT_BY_STATE for s in states.values()) and \
            time.monotonic() - last_new >= SETTLE_SECONDS
    for reply in controller.replies(sent, deadline, settled):
        clocks.check(reply)
        if reply.device not in states:
            last_new = time.monotonic()
        if states.get(reply.device) == "not understood":
            if reply.problem:
                continue    # said once per device: a device cannot flood the screen
        else:
            states[reply.device] = reply.state
        if reply.state != "progress" or args.json:
            print(reply_line(reply, args.json), flush=True)
    if not states:
        print("facewatch ctl: no device answered within {:.0f} s".format(args.timeout or DEFAULT_TIMEOUTS[args.action]),
              file=sys.stderr)
        return EXIT_FAILURE
    unfinished = sorted(shown(d, SHOWN_NAME) for d, s in states.items() if s not in EXIT_BY_STATE)
    if unfinished:
        print("facewatch ctl: no outcome in time from {}".format(", ".join(unfinished)), file=sys.stderr)
    return max([EXIT_BY_STATE.get(s, EXIT_FAILURE) for s in states.values()])


def reply_line(reply, as_json):
    """A reply as printed: one JSON line (--json), or one line a person reads."""
    if as_json:
        return json.dumps(reply.document if reply.document is not None else
                          {"device": reply.device, "state": reply.state, "error": reply.problem})
    return describe(reply)


def describe(reply):
    """One line a person reads: DEVICE STATE and what matters for that state."""
    device = shown(reply.device, SHOWN_NAME)
    if reply.problem:
        return "{}: reply not understood: {}".format(device, shown(reply.problem, SHOWN_ERROR))
    document = reply.document
    state, command = document["state"], document["command"]
    if state in ("rejected", "failed"):
        return "{}: {} {}: {}".format(device, command, state, shown(document["error"], SHOWN_ERROR))
    if state == "accepted" and command == "rebuild":
        return "{}: rebuild accepted: {} {} ({}); inference {}".format(
            device, shown(document["precision"].upper()), shown(document["mode"]),
            word(document.get("mode_reason"), SHOWN_ERROR), word(document.get("inference"), SHOWN_ERROR))
    if state != "done":
        return "{}: {} {}".format(device, command, state)
    if command == "status":
        return "{}: {}".format(device, status_line(document["status"]))
    if command == "snapshot":
        return "{}: snapshot of {} bytes on {}".format(device, document["bytes"], shown(document["topic"]))
    return "{}: rebuild done: {} engine {}{}{}".format(
        device, shown(document["precision"].upper()), shown(document["key"]),
        " (built)" if document["built"] else " (cached)",
        "; fallback: " + shown(document["fallback_reason"], SHOWN_ERROR) if document.get("fallback_reason") else "")


def word(value, limit=40, upper=False):
    """A checked field (text, number, boolean or null) as it appears in a line: null as '?'."""
    if value is None:
        return "?"
    return shown(value.upper() if upper and isinstance(value, str) else value, limit)


def status_line(status):
    """A status (checked by replies.check_status) in one line."""
    from appliance.remote.replies import field
    def get(*path, **options):
        return word(field(status, path), **options)
    if "camera" not in status:
        return "starting: {} | engine {} {}".format(get("phase"), get("engine", "state"),
                                                    get("engine", "precision", upper=True))
    return "engine {} {} {} | camera {} {} fps | inference {} fps, p50 {} ms | MQTT {} | uptime {} s".format(
        get("engine", "state"), get("engine", "backend"), get("engine", "precision", upper=True),
        get("camera", "state"), get("fps", "capture"), get("fps", "inference"),
        get("latency_ms", "inference", "p50"), "connected" if field(status, ("mqtt", "connected")) else "down",
        get("uptime"))


class Clocks:
    """Says, once per device, how far its clock is from this computer's: when a reply's ts is more than
    SKEW_SHOWN s away from it, or when the device refused the command for its ts."""

    def __init__(self):
        self._told = set()

    def check(self, reply):
        if reply.problem or reply.device in self._told:
            return
        now = time.time()
        if abs(reply.document["ts"] - now) > SKEW_SHOWN or reply.about_ts():
            self._told.add(reply.device)
            print(clock_line(reply.device, reply.document["ts"], now), file=sys.stderr, flush=True)


def clock_line(device, device_ts, now):
    from appliance.remote.envelope import MAX_CLOCK_SKEW
    skew = device_ts - now
    there, here = utc(device_ts), utc(now)
    if there[:10] == here[:10]:
        here = here[11:]
    relation = "agrees with this computer's" if abs(skew) < 0.5 else "is {} {} this computer's".format(
        duration(abs(skew)), "ahead of" if skew > 0 else "behind")
    return ("facewatch ctl: {}'s clock {} (device {} UTC, here {} UTC); a command is refused when they differ "
            "by more than {:.0f} s".format(shown(device, SHOWN_NAME), relation, there, here, MAX_CLOCK_SKEW))


def utc(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def duration(seconds):
    if seconds < 3600:
        return "{:.0f} s".format(seconds)
    if seconds < 2 * 86400:
        return "{:.1f} h".format(seconds / 3600)
    return "{:.0f} days".format(seconds / 86400)


def watch(controller, args):
    controller.subscribe(list(answering(controller.prefix, args.target).watched))
    try:
        for topic, payload in controller.follow():
            if topic is None:
                print("facewatch ctl: {} messages dropped so far: they came faster than they were shown".format(
                    payload), file=sys.stderr, flush=True)
                continue
            print(watch_line(controller.prefix, topic, payload, args.json), flush=True)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def watch_line(prefix, topic, payload, as_json):
    """A message on PREFIX/DEVICE/status, engine or telemetry in one line; one that is not understood
    says why."""
    from appliance.remote.replies import read_watched
    from appliance.untrusted import Refused
    kind = topic.rsplit("/", 1)[-1]
    device = shown(topic[len(prefix) + 1:-len(kind) - 1], SHOWN_NAME)
    try:
        document = read_watched(kind, payload)
    except Refused as exc:
        if as_json:
            return json.dumps({"topic": topic, "not_understood": str(exc)})
        return "{} {} {} (not understood: {})".format(time.strftime("%H:%M:%S"), device, kind,
                                                     shown(str(exc), SHOWN_ERROR))
    if as_json:
        return json.dumps({"topic": topic, "payload": payload.decode("utf-8")})
    stamp = time.strftime("%H:%M:%S")
    if kind == "status":
        return "{} {} status {}".format(stamp, device, shown(document) if document else "(cleared)")
    if kind == "engine":
        return "{} {} engine {}".format(stamp, device, engine_line(document))
    return "{} {} {}".format(stamp, device, status_line(document))


def engine_line(document):
    """A message of the engine topic (checked by replies.read_watched): state, phase, precision, error."""
    parts = [shown(document["state"])]
    if document.get("phase"):
        parts.append(shown(document["phase"]))
    if document.get("precision"):
        parts.append(shown(document["precision"].upper()))
    if document.get("error"):
        parts.append(shown(document["error"], SHOWN_ERROR))
    return " ".join(parts)
