"""`facewatch engines build [--precision P] [--force]` and `facewatch engines list`."""
import json


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser("build", help="build and check engines now")
    build.add_argument("--precision", choices=["auto", "int8", "fp16", "fp32"], help="default: engine.precision")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    build.add_argument("--strict", action="store_true", help="refuse (exit 2) instead of falling back")
    listing = actions.add_parser("list", help="cache entries, their keys, the active one")
    listing.add_argument("--json", action="store_true")
    for sub in (build, listing):
        sub.add_argument("--config", metavar="PATH")
        sub.add_argument("--cache-dir", metavar="DIR", help="default: engine.cache_dir")
        sub.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], help="default: engine.backend")


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
    return manager_for(config, backend=args.backend, cache_dir=args.cache_dir, report=report), config


def build(args):
    from appliance.progress import ProgressBar
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
    print("{} {}: {} ({} engine, requested {}){}".format(
        "built" if engine.built_now else "reused", engine.name, engine.path, engine.precision.upper(),
        engine.requested, "; fallback: " + engine.fallback_reason if engine.fallback_reason else ""))
    return 0


def list_engines(args):
    manager, _ = open_manager(args)
    entries = manager.store.entries()
    active = manager.store.active()
    if args.json:
        print(json.dumps({"cache_dir": manager.store.directory, "active": active, "engines": entries}, indent=2))
        return 0
    print("engine cache {} ({} entr{})".format(manager.store.directory, len(entries), "y" if len(entries) == 1 else "ies"))
    for entry in entries:
        inputs = entry.get("key_inputs", {})
        print("{} {}  {}  {} bytes  built in {} s{}".format(
            "*" if entry["name"] == active else " ", entry["name"], entry.get("precision", "?").upper(),
            entry.get("size"), entry.get("build_seconds"),
            "  fallback: " + entry["fallback_reason"] if entry.get("fallback_reason") else ""))
        print("    {} {} on {} ({}), input {}".format(
            inputs.get("backend"), inputs.get("backend_version"), inputs.get("device"),
            inputs.get("compute_capability"), "x".join(str(v) for v in inputs.get("input_shape", []))))
    return 0
