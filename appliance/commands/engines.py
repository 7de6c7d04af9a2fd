"""`facewatch engines build [--precision P] [--force]` and `facewatch engines list`."""
import json

from appliance.commands import arguments


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="build and check engines now")
    build.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"], help="default: engine.precision")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    build.add_argument("--strict", action="store_true", help="refuse (exit 2) instead of falling back")
    build.add_argument("--frame-size", metavar="WxH", type=arguments.frame_size,
                       help="the camera's frame size to build for (default: camera.width x camera.height, "
                            "else 640x480)")
    listing = actions.add_parser("list", help="cache entries, their keys, the active one")
    listing.add_argument("--json", action="store_true")
    for sub in (build, listing):
        sub.add_argument("--config", metavar="PATH", type=arguments.path)
        sub.add_argument("--cache-dir", metavar="DIR", type=arguments.library_path, help="default: engine.cache_dir")
    build.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], help="default: engine.backend")


def run(args):
    from appliance.errors import UsageError
    if args.action == "build":
        return build(args)
    if args.action == "list":
        return list_engines(args)
    raise UsageError("say `facewatch engines build` or `facewatch engines list`")


def open_manager(args, report=None):
    from appliance import config as configuration
    from appliance.engine.setup import manager_for
    config = configuration.load(args.config, required=bool(args.config))
    return manager_for(config, backend=args.backend, cache_dir=args.cache_dir, report=report,
                       frame_size=args.frame_size), config


def build(args):
    from appliance.progress import ProgressBar
    from appliance.shapes import describe
    bar = ProgressBar()

    def report(**fields):
        if fields.get("state") == "building":
            bar.update("{} {}".format(fields["precision"], fields.get("phase") or ""), fields.get("progress") or 0.0,
                       fields.get("eta_s"))
    manager, config = open_manager(args, report)
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
    return 0


def list_engines(args):
    """Only looks: no backend is loaded and nothing is created, so a read-only cache lists too."""
    from appliance import config as configuration
    from appliance.engine.store import EngineStore
    from appliance.paths import default_cache_dir
    config = configuration.load(args.config, required=bool(args.config))
    store = EngineStore(args.cache_dir or config.engine.cache_dir or default_cache_dir(), read_only=True)
    entries = [json_safe(entry) for entry in store.entries()]
    record = store.active_record() or {"engine": None, "choice_reason": None}
    active = record["engine"]
    if args.json:
        print(json.dumps({"cache_dir": store.directory, "active": active, "choice_reason": record["choice_reason"],
                          "engines": entries}, indent=2, allow_nan=False))
        return 0
    print("engine cache {} ({} entr{})".format(store.directory, len(entries), "y" if len(entries) == 1 else "ies"))
    for entry in entries:
        print(describe_entry(entry, active))
        if entry["name"] == active and record["choice_reason"]:
            print("    chosen: {}".format(record["choice_reason"]))
    return 0


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
    """Three lines per cache entry; one naming the problem for an entry that cannot be read."""
    mark = "*" if entry["name"] == active else " "
    if "broken" in entry:
        return "{} {}  BROKEN: {} (rebuilt when needed)".format(mark, entry["name"], entry["broken"])
    inputs = entry.get("key_inputs") if isinstance(entry.get("key_inputs"), dict) else {}
    shape = inputs.get("input_shape")
    fallback = entry.get("fallback_reason")
    latency = entry.get("latency_ms")
    return "{} {}  {}  {} bytes  built in {} s{}\n    {} {} on {} ({}), input {}\n    {}".format(
        mark, entry["name"], str(entry.get("precision", "?")).upper(), entry.get("size"), entry.get("build_seconds"),
        "  fallback: {}".format(fallback) if fallback else "",
        inputs.get("backend"), inputs.get("backend_version"), inputs.get("device"), inputs.get("compute_capability"),
        "x".join(str(v) for v in shape) if isinstance(shape, list) else shape,
        "{} ms per inference measured here".format(latency) if isinstance(latency, (int, float)) else
        "not timed yet")
