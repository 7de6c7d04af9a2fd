"""`facewatch`: one sub-command per module in appliance.commands, imported only when run."""
import argparse
import importlib
import logging
import os
import sys

from appliance import __version__
from appliance.errors import EXIT_FAILURE, EXIT_USAGE, FacewatchError

INTERNAL_ERROR = "internal error:"

COMMANDS = (
    ("run", "appliance.commands.run", "the daemon, in the foreground (what systemd starts)"),
    ("demo", "appliance.commands.demo", "the whole daemon on a bundled clip, CPU backend, a private broker, no camera needed"),
    ("detect", "appliance.commands.detect", "one-shot face detection on images"),
    ("engines", "appliance.commands.engines", "build, check and list inference engines"),
    ("calibrate", "appliance.commands.calibrate", "make an INT8 calibration table and Q/DQ model from images"),
    ("ctl", "appliance.commands.ctl", "remote client: sign and send a command, print replies"),
    ("doctor", "appliance.commands.doctor", "environment report"),
    ("check-config", "appliance.commands.check_config", "validate a config file and explain every error"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "{}: error: {}\n".format(self.prog, message))


def available_commands():
    """The commands whose modules exist in this build."""
    found = []
    for name, module_name, help_text in COMMANDS:
        try:
            found.append((name, importlib.import_module(module_name), help_text))
        except ImportError as exc:
            if exc.name != module_name:
                raise
    return found


class OutputFailed(FacewatchError):
    """Standard output refuses what the command writes (a full disk, /dev/full): a runtime failure."""


class GuardedOutput:
    """Standard output whose write errors end the command with a plain message (exit 1); a reader that
    left (EPIPE, `| head`) ends it silently. Either way the descriptor is then pointed at /dev/null, so the
    interpreter's own final flush does not fail again."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._fail(exc)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a file descriptor (a test's StringIO)
            pass
        if isinstance(exc, BrokenPipeError):
            raise exc
        raise OutputFailed("cannot write to standard output: {}".format(exc.strerror or exc))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def build_parser():
    parser = _Parser(prog="facewatch", description="Face detection appliance for NVIDIA Jetson and Linux.")
    parser.add_argument("--version", action="version", version="facewatch " + __version__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module, help_text in available_commands():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    original = sys.stdout
    if original is not None:
        sys.stdout = GuardedOutput(original)
    try:
        return run_guarded(args)
    finally:
        sys.stdout = original


def run_guarded(args):
    """The command, with every way it can end turned into an exit code and one clear line."""
    try:
        code = args.handler(args)
        sys.stdout.flush()
        return code
    except FacewatchError as exc:
        print("facewatch {}: {}".format(args.command, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:  # `facewatch ... | head`: the reader left; nothing more to say
        return EXIT_FAILURE
    except Exception as exc:  # a bug of ours: a plain message for the user, the traceback for a report
        logging.getLogger("facewatch").debug("internal error", exc_info=True)
        print("facewatch {}: {} {}: {} (the traceback is shown with --log-level debug; please report it)".format(
            args.command, INTERNAL_ERROR, type(exc).__name__, exc), file=sys.stderr)
        return EXIT_FAILURE
