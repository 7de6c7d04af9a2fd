"""Threads that cannot die silently.

A Worker runs one loop on its own thread. If the loop raises, or returns while nobody asked it to
stop, the Worker keeps why and calls `on_death(worker)`: the daemon then stops with exit status 1
and says which thread died and why, so systemd restarts it (as Frigate's watchdog restarts a dead
camera). Nothing is left in a state that claims to be working.
"""
import logging
import threading
import traceback

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, name, loop, stop_event, on_death, may_end=False):
        self.name = name
        self._loop = loop
        self._stop = stop_event
        self._on_death = on_death
        self._may_end = may_end
        self.cause = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def join(self, timeout):
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self):
        return self._thread.is_alive()

    def _run(self):
        try:
            self._loop()
        except BaseException as exc:  # any escape is this thread's death: reported, never swallowed
            self.cause = "{}: {}".format(type(exc).__name__, exc)
            log.error("the %s thread died: %s\n%s", self.name, self.cause, traceback.format_exc().rstrip())
        else:
            if self._may_end or self._stop.is_set():
                return
            self.cause = "its loop ended although facewatch was not stopping"
            log.error("the %s thread ended unexpectedly", self.name)
        self._on_death(self)


class Supervisor:
    """Knows every Worker; the first death is the daemon's failure and stops everything."""

    def __init__(self, stop_event):
        self._stop = stop_event
        self._workers = []
        self._lock = threading.Lock()
        self.failure = None

    def start(self, name, loop, may_end=False):
        """Run `loop` on a thread named `name`; `may_end`: returning on its own is not a death."""
        worker = Worker(name, loop, self._stop, self._died, may_end)
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive() or w.cause]  # forget those done well
            self._workers.append(worker)
        return worker.start()

    def _died(self, worker):
        with self._lock:
            if self.failure is None:
                self.failure = "the {} thread died: {}".format(worker.name, worker.cause)
        self._stop.set()

    def join(self, names, timeout=5.0):
        """Wait for the named workers to end; the names of those still running."""
        stuck = []
        for worker in [w for w in self._workers if w.name in names]:
            if not worker.join(timeout):
                stuck.append(worker.name)
        return stuck

    def alive(self):
        return sorted(w.name for w in self._workers if w.is_alive())
