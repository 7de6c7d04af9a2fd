"""`facewatch run [--config PATH]`: the daemon in the foreground, as systemd starts it.

SIGTERM and SIGINT only set the stop event; the daemon publishes `stopped` and exits within 5 s.
"""
import signal
import threading

from appliance.commands import arguments


def add_arguments(parser):
    parser.add_argument("--config", metavar="PATH", type=arguments.path,
                        help="TOML file (default /etc/facewatch/facewatch.toml, or "
                        "facewatch.toml in $CONFIGURATION_DIRECTORY); facewatch does not run without one")


def install_stop_handlers(stop_event):
    def request_stop(signum, frame):
        stop_event.set()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)


def run(args):
    from appliance import config as configuration
    from appliance.app import App

    config = configuration.load(args.config, required=True)
    stop_event = threading.Event()
    install_stop_handlers(stop_event)
    App(config, stop_event).run()
    return 0
