"""`facewatch engines build [--precision P] [--force]` and `facewatch engines list`."""
import json
import os

from appliance.backends import AUTO, BACKEND_CHOICES, PRECISION_CHOICES
from appliance.commands import arguments


BUILD_DESCRIPTION = """Build the inference engine now and check it on the golden image (acceptance), or reuse the
cached one that checks out. Prints what serves, its measured inference time, why this precision, and the
engine cache it is in (and that it created it, if it did). Defaults come from the configuration (engine.*)."""
LIST_DESCRIPTION = """List the engine cache: each engine's precision, size, what was requested when it was built,
its backend, device and input shape, its measured inference time; `*` marks the one in use and the request
that chose it. It only looks: nothing is created."""
CONFIG_HELP = ("TOML file for the engine.* defaults (default /etc/facewatch/facewatch.toml, or facewatch.toml in "
               "$CONFIGURATION_DIRECTORY, if present)")
CACHE_HELP = ("engine cache folder (default: engine.cache_dir, else $STATE_DIRECTORY/engines under systemd, "
              "/var/lib/facewatch/engines as root, ~/.cache/facewatch/engines otherwise)")


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="build and check engines now", description=BUILD_DESCRIPTION)
    build.add_argument("--precision", choices=PRECISION_CHOICES, help="default: engine.precision")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    build.add_argument("--strict", action="store_true", help="refuse (exit 2) instead of falling back")
    build.add_argument("--frame-size", metavar="WxH", type=arguments.frame_size,
                       help="the camera's frame size to build for (default: camera.width x camera.height, "
                            "else 640x480)")
    listing = actions.add_parser("list", help="cache entries, their keys, the active one", description=LIST_DESCRIPTION)
    listing.add_argument("--json", action="store_true",
                         help="one JSON object: cache_dir, active, choice_reason and every entry's sidecar")
    for sub in (build, listing):
        sub.add_argument("--config", metavar="PATH", type=arguments.path, help=CONFIG_HELP)
        sub.add_argument("--cache-dir", metavar="DIR", type=arguments.library_path, help=CACHE_HELP)
    build.add_argument("--backend", choices=BACKEND_CHOICES, help="default: engine.backend")


def run(args):
    from appliance.errors import UsageError
    if args.action == "build":
        return build(args)
    if args.action == "list":
        return list_engines(args)
    raise UsageError("say `facewatch engines build` or `facewatch engines list`")


def cache_dir_and_why(args, config):
    """(the engine cache this command uses, why that one: words for a person)."""
    from appliance.config.schema import origin
    if args.cache_dir:
        return args.cache_dir, "--cache-dir"
    return config.engine.cache_dir, origin(config, "engine.cache_dir")


def highest_missing(directory):
    """The outermost folder of `directory` that does not exist yet (what creating it creates), or None."""
    directory = os.path.abspath(directory)
    if os.path.lexists(directory):
        return None
    while not os.path.lexists(os.path.dirname(directory)) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    return directory


def build(args):
    from appliance.backends import choose_backend
    from appliance.config import schema as configuration
    from appliance.engine.setup import manager_for
    from appliance.commands.progress import ProgressBar
    from appliance.engine.shapes import describe
    bar = ProgressBar()

    def report(**fields):
        if fields.get("state") == "building":
            bar.update("{} {}".format(fields["precision"], fields.get("phase") or ""), fields.get("progress") or 0.0,
                       fields.get("eta_s"))
    config = configuration.load(args.config, required=bool(args.config))
    backend = choose_backend(args.backend or config.engine.backend)
    directory, why = cache_dir_and_why(args, config)
    created = highest_missing(directory)
    manager = manager_for(config, backend=backend, cache_dir=directory, report=report, frame_size=args.frame_size)
    requested = args.precision or config.engine.precision
    try:
        engine = manager.ensure(requested, force=args.force, strict=args.strict)
    finally:
        bar.finish()
    print("{} {}: {} ({} engine at {}, requested {}){}".format(
        "built" if engine.built_now else "reused", engine.name, engine.path, engine.precision.upper(),
        describe(engine.size), engine.requested,
        "; fallback: " + engine.fallback_reason if engine.fallback_reason else ""))
    print("  {} ms per inference measured here; {}".format(
        "?" if engine.latency_ms is None else "{:.2f}".format(engine.latency_ms), engine.choice_reason))
    print(cache_line(manager.store.directory, why, created))
    return 0


def cache_line(directory, why, created):
    """Where the engine went, why there, and what this build created to put it there."""
    line = "  engine cache {} ({})".format(directory, why)
    if created:
        line += "; created by this build{}; --cache-dir DIR or engine.cache_dir choose another".format(
            "" if same_folder(created, directory) else ", with {} above it".format(created))
    return line


def list_engines(args):
    """Only looks: no backend is loaded and nothing is created, so a read-only cache lists too."""
    from appliance.config import schema as configuration
    from appliance.engine.store import EngineStore, StoreError
    config = configuration.load(args.config, required=bool(args.config))
    directory, why = cache_dir_and_why(args, config)
    if not os.path.isdir(directory):
        raise StoreError("there is no engine cache at {} ({}){}".format(directory, why, elsewhere(directory)))
    store = EngineStore(directory, read_only=True)
    entries = [json_safe(entry) for entry in store.entries()]
    record = store.active_record() or {"engine": None, "choice_reason": None}
    active = record["engine"]
    if args.json:
        print(json.dumps({"cache_dir": store.directory, "active": active, "choice_reason": record["choice_reason"],
                          "engines": entries}, indent=2, allow_nan=False))
        return 0
    print("engine cache {} ({} entr{}; {})".format(store.directory, len(entries), "y" if len(entries) == 1 else "ies",
                                                   why))
    for entry in entries:
        print(describe_entry(entry, active))
        if entry["name"] == active and record["choice_reason"]:
            print("    in use since the last request: {}".format(record["choice_reason"]))
    return 0


def elsewhere(looked_at):
    """Where else engines are kept, as `--cache-dir` hints: the demo's cache (the user's own) always, the
    service's where it exists."""
    from appliance.config.paths import shown_home, user_cache_dir
    hints = []
    demo, service = user_cache_dir(), "/var/lib/facewatch/engines"
    if not same_folder(demo, looked_at):
        hints.append("`facewatch demo` keeps its engines in {0}{1}".format(
            shown_home(demo), ": facewatch engines list --cache-dir " + shown_home(demo) if os.path.isdir(demo) else
            " (none there yet)"))
    if not same_folder(service, looked_at) and os.path.isdir(service):
        hints.append("the service keeps its engines in {0}: facewatch engines list --cache-dir {0}".format(service))
    hints.append("another folder: --cache-dir DIR, or engine.cache_dir in the configuration; a new cache: "
                 "facewatch engines build")
    return "".join("\n  " + hint for hint in hints)


def same_folder(a, b):
    return os.path.abspath(a) == os.path.abspath(b)


def json_safe(value):
    """A sidecar's content as valid JSON: a NaN or an infinity someone wrote there becomes null."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def describe_entry(entry, active):
    """Three or four lines per cache entry (the request it was built for, when known); one naming the problem
    for an entry that cannot be read."""
    mark = "*" if entry["name"] == active else " "
    if "broken" in entry:
        return "{} {}  BROKEN: {} (rebuilt when needed)".format(mark, entry["name"], entry["broken"])
    inputs = entry.get("key_inputs") if isinstance(entry.get("key_inputs"), dict) else {}
    shape = inputs.get("input_shape")
    latency = entry.get("latency_ms")
    lines = ["{} {}  {}  {} bytes  built in {} s".format(
        mark, entry["name"], str(entry.get("precision", "?")).upper(), entry.get("size"), entry.get("build_seconds")),
        "    {} {} on {} ({}), input {}".format(
            inputs.get("backend"), inputs.get("backend_version"), inputs.get("device"),
            inputs.get("compute_capability"), "x".join(str(v) for v in shape) if isinstance(shape, list) else shape)]
    built_for = built_for_line(entry)
    if built_for:
        lines.append(built_for)
    lines.append("    {} ms per inference measured here".format(latency) if isinstance(latency, (int, float)) else
                 "    not timed yet")
    return "\n".join(lines)


def built_for_line(entry):
    """What was requested when this engine was built, and the fallback then: history of the build, not why
    it serves now (that is the last request's, on the active entry)."""
    requested, fallback = entry.get("requested_precision"), entry.get("fallback_reason")
    if fallback:
        return "    built as a fallback: {}".format(fallback)
    if requested:
        return "    built when {} was requested".format(AUTO if requested == AUTO else str(requested).upper())
    return ""
