"""`facewatch run [--config PATH]`: the daemon in the foreground, as systemd starts it.

SIGTERM, SIGINT and SIGHUP (a closed terminal) only set the stop event; the daemon publishes `stopped`
and exits within 5 s. SIGUSR1 and SIGUSR2 are ignored (said in the log) instead of killing it.
"""
import logging
import signal
import threading

from appliance.commands import arguments

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
IGNORED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def add_arguments(parser):
    parser.add_argument("--config", metavar="PATH", type=arguments.path,
                        help="TOML file (default /etc/facewatch/facewatch.toml, or "
                        "facewatch.toml in $CONFIGURATION_DIRECTORY); facewatch does not run without one")


def install_stop_handlers(stop_event):
    def request_stop(signum, frame):
        stop_event.set()

    def ignore(signum, frame):
        logging.getLogger("appliance").warning("%s ignored: stop facewatch with SIGTERM", signal.Signals(signum).name)
    for signum in STOP_SIGNALS:
        signal.signal(signum, request_stop)
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, ignore)


def ignore_late_signals():
    """Once stopped, a second Ctrl-C or SIGTERM must not turn a clean exit into an interrupted one."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def run(args):
    from appliance.config import schema as configuration
    from appliance.daemon.app import App

    config = configuration.load(args.config, required=True)
    stop_event = threading.Event()
    install_stop_handlers(stop_event)
    try:
        App(config, stop_event).run()
    finally:
        ignore_late_signals()
    return 0
