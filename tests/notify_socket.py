"""What systemd would receive from facewatch: a datagram socket at $NOTIFY_SOCKET that keeps every
sd_notify message, so a test can wait for READY=1, a STATUS= text or watchdog pings as events."""
import os
import shutil
import socket
import tempfile
import threading
import time


class NotifySocket:
    def __init__(self):
        self._directory = tempfile.mkdtemp(prefix="fw-notify-")  # short: AF_UNIX paths end at 107 bytes
        self.path = os.path.join(self._directory, "notify.sock")
        self.messages = []
        self._condition = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def environment(self, watchdog_seconds=None):
        env = {"NOTIFY_SOCKET": self.path}
        if watchdog_seconds:
            env["WATCHDOG_USEC"] = str(int(watchdog_seconds * 1e6))
        return env

    def _receive(self):
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            with self._condition:
                self.messages.extend(data.decode("utf-8", "replace").split("\n"))
                self._condition.notify_all()

    def count(self, line):
        with self._condition:
            return self.messages.count(line)

    def statuses(self):
        with self._condition:
            return [m[len("STATUS="):] for m in self.messages if m.startswith("STATUS=")]

    def wait_for(self, predicate, timeout, message="a notification"):
        """Wait until predicate(messages) is true; the value it returned."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out after {} s waiting for {}; got {}".format(
                        timeout, message, self.messages[-10:]))
                self._condition.wait(remaining)

    def close(self):
        self._sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)
