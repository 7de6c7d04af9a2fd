"""A progress bar on stderr for terminals, one line per phase elsewhere (logs, pipes).

The label and numbers may come from another machine (a device's rebuild progress, through `facewatch
ctl`): the label is escaped and cut, and a fraction or ETA that is not a finite number (or an ETA below 0)
is shown as a progress that could not be read, never an exception."""
import math
import sys

from appliance.untrusted import shown

MAX_LABEL = 40


class ProgressBar:
    def __init__(self, stream=None, width=30):
        self._stream = stream or sys.stderr
        self._width = width
        self._tty = hasattr(self._stream, "isatty") and self._stream.isatty()
        self._last_phase = None

    def update(self, label, fraction, eta=None):
        label = shown(label, MAX_LABEL)
        if not finite(fraction) or not (eta is None or finite(eta) and eta >= 0):
            self._unreadable(label, "fraction {} and ETA {}".format(shown(fraction, 40), shown(eta, 40)))
            return
        fraction = min(max(fraction, 0.0), 1.0)
        eta_text = "  ETA {:.0f} s".format(eta) if eta is not None else ""
        if self._tty:
            filled = int(round(self._width * fraction))
            self._stream.write("\r[{}{}] {:3.0f}% {:<12}{}   ".format(
                "#" * filled, "." * (self._width - filled), fraction * 100, label, eta_text))
        elif label != self._last_phase:
            self._stream.write("{:3.0f}% {}{}\n".format(fraction * 100, label, eta_text))
        self._last_phase = label
        self._stream.flush()

    def unreadable(self, label, reason):
        """A progress report that cannot be shown as a bar: said once per phase, with why."""
        self._unreadable(shown(label, MAX_LABEL), shown(reason))

    def _unreadable(self, label, reason):
        if label != self._last_phase or self._tty:
            self._stream.write("{}{}: progress could not be read: {}{}".format(
                "\r" if self._tty else "", label, reason, "   " if self._tty else "\n"))
        self._last_phase = label
        self._stream.flush()

    def finish(self):
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def finite(value):
    """A real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
