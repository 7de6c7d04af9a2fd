"""Where facewatch keeps its state when the configuration does not say: systemd's directories first.

config.schema resolves engine.cache_dir and commands.state_dir with these when it loads a configuration
that leaves them empty; everyone else reads the loaded configuration."""
import os


def _systemd_directory(variable):
    value = os.environ.get(variable)
    return value.split(":")[0] if value else ""


def default_state_dir():
    """$STATE_DIRECTORY under systemd; /var/lib/facewatch for root; else ~/.local/state/facewatch."""
    return default_state_dir_and_why()[0]


def default_state_dir_and_why():
    """(the default state folder, why it is that one: words for a person)."""
    state = _systemd_directory("STATE_DIRECTORY")
    if state:
        return state, "the default under systemd: $STATE_DIRECTORY"
    if os.geteuid() == 0:
        return "/var/lib/facewatch", "the default for root, where the service keeps its state"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "facewatch"), "the default for a user who is not root"


def user_cache_dir():
    """The user's own engine cache: $XDG_CACHE_HOME/facewatch/engines, else ~/.cache/facewatch/engines.
    `facewatch demo` keeps its engines there whoever runs it (root included)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "facewatch", "engines")


def default_cache_dir():
    """$STATE_DIRECTORY/engines under systemd; /var/lib/facewatch/engines for root; else the user cache."""
    return default_cache_dir_and_why()[0]


def default_cache_dir_and_why():
    """(the default engine cache, why it is that one: words for a person)."""
    state = _systemd_directory("STATE_DIRECTORY")
    if state:
        return os.path.join(state, "engines"), "the default under systemd: $STATE_DIRECTORY/engines"
    if os.geteuid() == 0:
        return "/var/lib/facewatch/engines", "the default for root, where the service keeps its engines"
    return user_cache_dir(), "the default for a user who is not root"


def shown_home(path):
    """`path` with the home folder written as ~, as a person types it."""
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home.rstrip("/") + "/")):
        return "~" + path[len(home.rstrip("/")):]
    return path
