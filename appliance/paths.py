"""Where facewatch keeps its state when the configuration does not say: systemd's directories first."""
import os


def _systemd_directory(variable):
    value = os.environ.get(variable)
    return value.split(":")[0] if value else ""


def default_state_dir():
    """$STATE_DIRECTORY under systemd; /var/lib/facewatch for root; else ~/.local/state/facewatch."""
    state = _systemd_directory("STATE_DIRECTORY")
    if state:
        return state
    if os.geteuid() == 0:
        return "/var/lib/facewatch"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "facewatch")


def default_cache_dir():
    """$STATE_DIRECTORY/engines under systemd; /var/lib/facewatch/engines for root; else the user cache."""
    state = _systemd_directory("STATE_DIRECTORY")
    if state:
        return os.path.join(state, "engines")
    if os.geteuid() == 0:
        return "/var/lib/facewatch/engines"
    return os.path.join(os.path.expanduser("~"), ".cache", "facewatch", "engines")
