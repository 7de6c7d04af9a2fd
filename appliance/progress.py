"""A progress bar on stderr for terminals, one line per phase elsewhere (logs, pipes)."""
import sys


class ProgressBar:
    def __init__(self, stream=None, width=30):
        self._stream = stream or sys.stderr
        self._width = width
        self._tty = hasattr(self._stream, "isatty") and self._stream.isatty()
        self._last_phase = None

    def update(self, label, fraction, eta=None):
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

    def finish(self):
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
