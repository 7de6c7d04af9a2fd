"""sd_notify(3) without libsystemd: READY, STATUS, WATCHDOG, EXTEND_TIMEOUT_USEC, STOPPING.

Outside systemd ($NOTIFY_SOCKET unset) every call does nothing.
"""
import os
import socket
import threading
import time


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        self._address = environ.get("NOTIFY_SOCKET", "")
        if self._address.startswith("@"):
            self._address = "\0" + self._address[1:]
        usec = int(environ.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            usec = 0
        self.watchdog_interval = usec / 1e6 / 2 if usec else 0.0
        self._last_watchdog = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self):
        return bool(self._address)

    def send(self, *assignments):
        if not self._address:
            return False
        message = "\n".join(assignments).encode("utf-8")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message, self._address)
            except OSError:
                return False
        return True

    def ready(self, status):
        self.send("READY=1", "STATUS=" + status)

    def status(self, text):
        self.send("STATUS=" + text)

    def extend_timeout(self, seconds):
        self.send("EXTEND_TIMEOUT_USEC={}".format(int(seconds * 1e6)))

    def stopping(self):
        self.send("STOPPING=1", "STATUS=stopping")

    def progress(self):
        """Called on real progress (a frame processed); pings the watchdog at most twice per period."""
        if not self.watchdog_interval:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last_watchdog < self.watchdog_interval / 2:
                return
            self._last_watchdog = now
        self.send("WATCHDOG=1")
