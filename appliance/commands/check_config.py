"""`facewatch check-config [--config PATH]`: validate a file and explain every error (exit 2 if any)."""
from appliance.commands import arguments



def add_arguments(parser):
    parser.add_argument("--config", metavar="PATH", type=arguments.path,
                        help="TOML file (default /etc/facewatch/facewatch.toml, or "
                        "facewatch.toml in $CONFIGURATION_DIRECTORY)")


def run(args):
    from appliance.config import schema as configuration

    path = args.config or configuration.default_path()
    config = configuration.load(path, required=True)
    from appliance.camera.sources import describe
    print("{}: ok (device {}, camera {}, broker {}:{})".format(
        path, configuration.device_id(config), describe(config.camera.source), config.mqtt.host, config.mqtt.port))
    return 0
