"""`facewatch ctl [BROKER OPTIONS] rebuild|status|snapshot|watch DEVICE|all`: the operator's remote control.

Signs a command with the key (--key-file, or commands.key_file of --config), sends it, and shows the
replies: a progress bar for a rebuild of one device, one line per device for `all`. Exit 0 when done,
1 when it failed or no reply came in time (said so), 2 when rejected or on bad usage; with `all`, the
worst of the devices that answered. `watch` follows status, engine and telemetry until Ctrl-C.
"""
import json
import sys
import time

from appliance.commands import arguments
from appliance.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

DEFAULT_TIMEOUTS = {"rebuild": 3600.0, "status": 10.0, "snapshot": 10.0}
SETTLE_SECONDS = 2.0    # with `all`: stop once every device that answered is final and none new came for this long
EXIT_BY_STATE = {"done": EXIT_OK, "failed": EXIT_FAILURE, "rejected": EXIT_USAGE}


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
    rebuild.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"],
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
        command_id = controller.send(args.action, args.target, command_args, key)
        deadline = time.monotonic() + (args.timeout or DEFAULT_TIMEOUTS[args.action])
        if args.target == "all":
            return follow_fleet(controller, command_id, deadline, args)
        return follow_one(controller, command_id, deadline, args)
    finally:
        controller.close()


def rebuild_args(args):
    command_args = {"force": args.force}
    if args.precision:
        command_args["precision"] = args.precision
    return command_args


def connection_settings(args):
    """(Controller keyword arguments, command key or None) from --config and the broker options."""
    from appliance import config as configuration
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


def follow_one(controller, command_id, deadline, args):
    from appliance.progress import ProgressBar
    bar = ProgressBar()
    try:
        for reply in controller.replies(command_id, deadline):
            if args.json:
                print(json.dumps(reply), flush=True)
            elif reply["state"] == "progress":
                bar.update(str(reply.get("phase")), float(reply.get("fraction") or 0.0), reply.get("eta_s"))
                continue
            bar.finish()
            if not args.json:
                print(describe(reply), flush=True)
            if reply["state"] in EXIT_BY_STATE:
                return EXIT_BY_STATE[reply["state"]]
    finally:
        bar.finish()
    print("facewatch ctl: no {} from {} within {:.0f} s (is it online? see {}/{}/status)".format(
        "outcome" if args.action == "rebuild" else "reply", args.target, args.timeout or DEFAULT_TIMEOUTS[args.action],
        controller.prefix, args.target), file=sys.stderr)
    return EXIT_FAILURE


def follow_fleet(controller, command_id, deadline, args):
    """One line per device and state change; ends when every device that answered is final and no new
    one answered for SETTLE_SECONDS, or at the deadline. The exit code is the worst device's."""
    states = {}
    last_new = time.monotonic()
    def settled():
        return bool(states) and all(s in EXIT_BY_STATE for s in states.values()) and \
            time.monotonic() - last_new >= SETTLE_SECONDS
    for reply in controller.replies(command_id, deadline, settled):
        device = str(reply.get("device"))
        if device not in states:
            last_new = time.monotonic()
        if reply["state"] == "progress" and not args.json:
            states[device] = "progress"
            continue
        states[device] = reply["state"]
        print(json.dumps(reply) if args.json else describe(reply), flush=True)
    unfinished = sorted(d for d, s in states.items() if s not in EXIT_BY_STATE)
    if not states:
        print("facewatch ctl: no device answered within {:.0f} s".format(args.timeout or DEFAULT_TIMEOUTS[args.action]),
              file=sys.stderr)
        return EXIT_FAILURE
    if unfinished:
        print("facewatch ctl: no outcome in time from {}".format(", ".join(unfinished)), file=sys.stderr)
    return max([EXIT_BY_STATE.get(s, EXIT_FAILURE) for s in states.values()])


def describe(reply):
    """One line a person reads: DEVICE STATE and what matters for that state."""
    device, state = reply.get("device"), reply.get("state")
    if state == "rejected" or state == "failed":
        return "{}: {} {}: {}".format(device, reply.get("command"), state, reply.get("error"))
    if state == "accepted":
        return "{}: rebuild accepted: {} {} ({}); inference {}".format(
            device, str(reply.get("precision")).upper(), reply.get("mode"), reply.get("mode_reason"),
            reply.get("inference"))
    if reply.get("command") == "status" and isinstance(reply.get("status"), dict):
        return "{}: {}".format(device, status_line(reply["status"]))
    if reply.get("command") == "snapshot":
        return "{}: snapshot of {} bytes on {}".format(device, reply.get("bytes"), reply.get("topic"))
    return "{}: rebuild done: {} engine {}{}{}".format(
        device, str(reply.get("precision")).upper(), reply.get("key"), " (built)" if reply.get("built") else
        " (cached)", "; fallback: {}".format(reply["fallback_reason"]) if reply.get("fallback_reason") else "")


def status_line(status):
    def get(*path):
        value = status
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        return value
    if "camera" not in status:
        return "starting: {} | engine {} {}".format(status.get("phase"), get("engine", "state"),
                                                    str(get("engine", "precision")).upper())
    return "engine {} {} {} | camera {} {} fps | inference {} fps, p50 {} ms | MQTT {} | uptime {} s".format(
        get("engine", "state"), str(get("engine", "backend")), str(get("engine", "precision")).upper(),
        get("camera", "state"), get("fps", "capture"), get("fps", "inference"),
        get("latency_ms", "inference", "p50"), "connected" if get("mqtt", "connected") else "down", get("uptime"))


def watch(controller, args):
    device = "+" if args.target == "all" else args.target
    controller.subscribe(["{}/{}/{}".format(controller.prefix, device, kind)
                          for kind in ("status", "engine", "telemetry")])
    try:
        for topic, payload in controller.follow():
            print(watch_line(topic, payload, args.json), flush=True)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def watch_line(topic, payload, as_json):
    _, device, kind = topic.rsplit("/", 2)
    text = payload.decode("utf-8", "replace")
    if as_json:
        return json.dumps({"topic": topic, "payload": text})
    stamp = time.strftime("%H:%M:%S")
    if kind == "status":
        return "{} {} status {}".format(stamp, device, text)
    try:
        document = json.loads(text)
    except ValueError:
        return "{} {} {} (not JSON: {} bytes)".format(stamp, device, kind, len(payload))
    if kind == "engine":
        return "{} {} engine {} {} {} {}".format(stamp, device, document.get("state"), document.get("phase"),
                                               str(document.get("precision")).upper(), document.get("error") or "")
    return "{} {} {}".format(stamp, device, status_line(document))
