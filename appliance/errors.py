"""The errors a user can meet, each tied to the exit code the SPEC gives it."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class FacewatchError(Exception):
    """A failure the user should read; never a traceback."""

    exit_code = EXIT_FAILURE


class UsageError(FacewatchError):
    """Bad arguments or bad input named on the command line."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file that cannot be used; the message names the key."""


class ModelError(FacewatchError):
    """A shipped model or manifest that is missing, altered or inconsistent."""


class BackendUnavailable(FacewatchError):
    """An inference backend whose libraries are not installed on this host."""


class Cancelled(Exception):
    """A long step (an engine build) stopped because facewatch is stopping; not a failure."""
