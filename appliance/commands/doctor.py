"""`facewatch doctor [--config PATH] [--json]`: what is wrong with this installation, on one screen.

Each line is ok, warn or fail, with a hint for what to do. Exit 1 when something blocks facewatch (a
fail), else 0. With a configuration (--config, or the default file when it exists) it also checks the
camera, the broker (and what bounds the size of the messages it hands facewatch) and the engine cache that
configuration names. The clock is checked for network time: signed commands depend on it.
"""
import json
import os

from appliance.commands import arguments
from appliance.errors import EXIT_FAILURE, EXIT_OK


def add_arguments(parser):
    parser.add_argument("--config", metavar="PATH", type=arguments.path,
                        help="the configuration to check with (default: the installed one, if any)")
    parser.add_argument("--json", action="store_true", help="one JSON object: every finding")


def run(args):
    from appliance.commands import diagnostics as checks
    findings = checks.python_version()
    on_jetson = os.path.exists("/etc/nv_tegra_release")
    findings += checks.packages(on_jetson) + checks.jetson_release()
    config, config_findings = load_config(args.config)
    findings += config_findings
    if config is not None:
        for check in (checks.backend, checks.opencv, checks.camera, checks.broker, checks.engine_cache):
            findings += guarded(check, config)
    for check in (checks.gpu, checks.systemd_unit, checks.time_sync):
        findings += guarded(check)
    findings = [without_credentials(f) for f in findings]
    blocking = [f for f in findings if f.level == checks.FAIL]
    if args.json:
        print(json.dumps({"ok": not blocking, "findings": [f._asdict() for f in findings]}, indent=2))
    else:
        for item in findings:
            print("{:<5} {:<13} {}".format(item.level, item.check, item.detail))
            if item.hint:
                print("{:<19} -> {}".format("", item.hint))
        print("\n{}".format("{} problem(s) block facewatch".format(len(blocking)) if blocking else
                            "nothing blocks facewatch"))
    return EXIT_FAILURE if blocking else EXIT_OK


def load_config(path):
    """(Config or None, findings): the named file, else the installed one if it exists."""
    from appliance.config import schema as configuration
    from appliance.commands.diagnostics import FAIL, OK, WARN, finding
    from appliance.errors import ConfigError
    path = path or configuration.default_path()
    if not os.path.lexists(path):
        return None, [finding("config", WARN, "no configuration at {}: camera, broker and cache not checked".format(path),
                              "facewatch doctor --config PATH")]
    try:
        return configuration.load(path, required=True), [finding("config", OK, path)]
    except ConfigError as exc:
        return None, [finding("config", FAIL, str(exc).replace("\n", " "), "facewatch check-config --config {}".format(path))]


def guarded(check, *config):
    """A check that breaks on this host is a warning, never the end of the report."""
    from appliance.commands.diagnostics import WARN, finding
    try:
        return check(*config)
    except Exception as exc:  # doctor must report on a broken installation, whatever breaks in it
        return [finding(check.__name__, WARN, "could not check: {}: {}".format(type(exc).__name__, exc))]


def without_credentials(item):
    """A finding as shown: a camera URL's credentials (userinfo, ?pwd=...) hidden wherever it is quoted, in
    an error message too."""
    from appliance.camera.sources import describe
    return item._replace(detail=describe(item.detail), hint=describe(item.hint))
