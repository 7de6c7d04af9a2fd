"""A rebuild ordered while detecting: built in a child process, checked, and swapped in between two frames.

Hot: the serving engine keeps detecting during the build. Paused: inference stops for the build, on a
device whose memory cannot hold the serving engine, the build and the new engine at once. `auto`
decides from what is measured: it builds hot when the available memory (psutil; on a Jetson the CPU
and GPU share it) is at least twice the serving engine's file, plus the builder's workspace, plus
BUILDER_OVERHEAD for the build process itself (TensorRT's and CUDA's libraries, ONNX parsing).
One build at a time; a failed build leaves the serving engine in place and says why.

The camera's frame size decides the engine's shape: the ShapeFollower (appliance.daemon.shape_follower) asks
for a switch once a new size has held, and switch() runs it as a rebuild that reuses the cached engine
if there is one. At most two engines are open: the serving one and, where memory allows a hot rebuild,
the one served before it, kept warm for a quick switch back; any other is closed before a new one is
loaded, and the memory the closed ones held is handed back to the system (release_memory).
"""
import logging
import os
import threading
from typing import NamedTuple

from appliance import files
from appliance.errors import Cancelled, FacewatchError
from appliance.remote.envelope import Rejected
from appliance.daemon.shape_follower import ShapeFollower
from appliance.engine.shapes import describe

log = logging.getLogger(__name__)

BUILDER_OVERHEAD = 768 << 20
PROGRESS_EVERY = 0.05  # report a build's progress to the commander when it moved by this fraction


def available_memory():
    import psutil
    return psutil.virtual_memory().available


def choose_mode(setting, engine_bytes, workspace_mb, available):
    """("hot" or "paused", why) for a rebuild."""
    if setting != "auto":
        return setting, "engine.rebuild_mode = {}".format(setting)
    needed = 2 * engine_bytes + (workspace_mb << 20) + BUILDER_OVERHEAD
    verdict = "hot" if available >= needed else "paused"
    return verdict, "{} available, about {} needed to build beside the serving engine".format(
        files.human_bytes(available), files.human_bytes(needed))


def release_memory():
    """Hand the free memory of closed engines back to the system. glibc keeps what a closed ONNX Runtime
    session freed in its heaps: 60 switches between two shapes with 2 inference threads grew the RSS from
    184 to 443 MB, all of it free memory that malloc_trim(0) returns. Elsewhere (musl) nothing to do."""
    try:
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def warm_detectors(manager, engine, first, count, cancel):
    """`first` and count - 1 more detectors on `engine`, one per inference thread, each warmed up; all of
    them closed if one fails to open or to warm up, or when `cancel` is set (Cancelled)."""
    detectors = [first]

    def go_on():
        if cancel.is_set():
            raise Cancelled("facewatch is stopping")
    try:
        for _ in range(count - 1):
            go_on()
            detectors.append(manager.open_detector(engine))
        for detector in detectors:
            go_on()
            detector.warm_up()
    except BaseException:
        for detector in detectors:
            detector.close()
        raise
    return detectors


class CameraOrder:
    """A switch facewatch orders itself when the camera's frames changed size and the size held: a command
    without a sender, whose replies go nowhere. The follower logs the switch (one line), a failure is
    logged as any rebuild's; the engine topic and telemetry say the rest."""

    def __init__(self, frame_size):
        self.frame_size = frame_size
        self.id = "camera-{}x{}".format(*frame_size)

    def reply(self, state, ok=True, **fields):
        pass


# What the detectors kept open beside the serving ones (Pipeline.park) are: the engine served before, and
# the frame size it was made for.
Parked = NamedTuple("Parked", [("engine", object), ("frame_size", tuple)])


class Rebuilder:
    def __init__(self, make_manager, pipeline, serving, on_served, settings, supervisor, stop_event,
                 frame_size, measure_memory=available_memory, shape_of=tuple):
        """make_manager(report, frame_size) -> EngineManager; serving() -> the Engine in use;
        on_served(engine, error) republishes the engine state after a rebuild (the new engine, or the old one
        with the error); frame_size() -> (width, height) of the camera's frames now (at first: those the
        serving engine was made for); shape_of(frame_size) -> the engine shape for frames of that size."""
        self._make_manager = make_manager
        self._pipeline = pipeline
        self._serving = serving
        self._on_served = on_served
        self._settings = settings
        self._supervisor = supervisor
        self._stop = stop_event
        self._frame_size = frame_size
        self._measure_memory = measure_memory
        self._lock = threading.Lock()
        self._refused = {}          # engine shape -> why its build failed (not tried again)
        self._known = {}            # engine shape -> whether it is cached (True once loaded here)
        self._engine_for = tuple(frame_size())
        self._switching = None
        self.running = None
        self.follower = ShapeFollower(shape_of, self)

    def start(self, command, precision, force):
        """Accept the rebuild (reply `accepted`) and run it on its own thread; Rejected if one is running."""
        with self._lock:
            if self.running is not None:
                raise Rejected("a rebuild is already running (id {})".format(self.running))
            self.running = command.id
            self._switching = command.frame_size if isinstance(command, CameraOrder) else None
        mode, why = choose_mode(self._settings.rebuild_mode, os.path.getsize(self._serving().path),
                                self._settings.workspace_mb, self._measure_memory())
        command.reply("accepted", mode=mode, mode_reason=why, precision=precision, force=force,
                      inference="paused during the build" if mode == "paused" else "continues during the build")
        log.log(logging.DEBUG if isinstance(command, CameraOrder) else logging.INFO,
                "rebuild %s: %s %s (%s)", command.id, precision, mode, why)
        frame_size = getattr(command, "frame_size", None) or self._frame_size()
        self._supervisor.start("rebuild", lambda: self._run(command, precision, force, mode, frame_size),
                               may_end=True)

    # --- what the ShapeFollower asks ---------------------------------------------------------------

    def frame_seen(self, frame_size):
        """Every frame's (width, height), on an inference thread: the follower switches once a size held."""
        self.follower.seen(frame_size)

    def serving(self):
        """(frame size the serving engine was made for, its shape)."""
        return self._engine_for, tuple(self._serving().size)

    def busy(self):
        return self.running is not None

    def switching(self):
        """The frame size a running switch is for, or None."""
        return self._switching

    def refusal(self, shape):
        return self._refused.get(shape)

    def cached(self, frame_size):
        """True when the engine for frame_size needs no build: kept open, loaded before, or in the cache
        (asked of the cache once per shape)."""
        shape = self._shape(frame_size)
        parked = self._pipeline.parked()
        if parked is not None and tuple(parked.engine.size) == shape:
            return True
        if shape not in self._known:
            try:
                manager = self._make_manager(lambda **fields: None, frame_size)
                self._known[shape] = manager.cached(self._settings.precision)
            except FacewatchError as exc:   # the switch's load will say it, and refuse the size
                log.debug("engine for %s frames: cannot tell whether it is cached: %s", describe(frame_size), exc)
                return False
        return self._known[shape]

    def switch(self, frame_size):
        """Switch to the engine for frames of frame_size (reused if cached, else built), hot by the same rule
        as a rebuild; False when a rebuild is running (nothing started)."""
        try:
            self.start(CameraOrder(frame_size), self._settings.precision, False)
        except Rejected:
            return False
        return True

    def _run(self, command, precision, force, mode, frame_size):
        camera = isinstance(command, CameraOrder)
        try:
            if mode == "paused":
                self._pipeline.pause()
            engine = self._build_and_swap(command, precision, force, frame_size,
                                          keep_previous=camera and mode == "hot")
            if precision == self._settings.precision:
                self._known[tuple(engine.size)] = True
            self._on_served(engine, None)
            command.reply("done", precision=engine.precision, requested_precision=precision, key=engine.name,
                          built=engine.built_now, fallback_reason=engine.fallback_reason,
                          latency_ms=engine.latency_ms, choice_reason=engine.choice_reason)
        except Cancelled:
            self._on_served(self._serving(), "rebuild {} stopped: facewatch stopped".format(command.id))
            command.reply("failed", ok=False, error="stopped: facewatch is stopping")
        except FacewatchError as exc:
            log.warning("rebuild %s failed: %s; the serving engine stays", command.id, exc)
            if camera:
                self._refused[self._shape(frame_size)] = str(exc)
            self._on_served(self._serving(), "rebuild {} failed: {}".format(command.id, exc))
            command.reply("failed", ok=False, error="{}; the serving engine stays".format(exc))
        finally:
            self._pipeline.resume()
            with self._lock:
                self._switching = None
                self.running = None

    def _shape(self, frame_size):
        return self.follower.shape_of(frame_size)

    def _build_and_swap(self, command, precision, force, frame_size, keep_previous=False):
        """The engine for frame_size serving: the one kept open if it has that shape (a camera switch), else
        loaded (built if need be). The one it replaces is kept open when keep_previous, else closed."""
        reported = {"phase": None, "progress": -1.0}

        def progress(**fields):
            phase, fraction = fields.get("phase"), fields.get("progress") or 0.0
            if fields.get("state") == "building" and (
                    phase != reported["phase"] or fraction - reported["progress"] >= PROGRESS_EVERY):
                reported.update(phase=phase, progress=fraction)
                command.reply("progress", phase=phase, fraction=round(fraction, 3), eta_s=fields.get("eta_s"))
        manager = self._make_manager(progress, frame_size)
        if isinstance(command, CameraOrder):
            manager.log_level = logging.DEBUG   # the follower's line says it
        parked, detectors = self._pipeline.unpark()
        if parked is not None and isinstance(command, CameraOrder) and parked.engine.size == manager.size:
            engine = parked.engine
            try:
                manager.announce(engine)
            except BaseException:
                close_all(detectors)
                raise
        else:
            if parked is not None:      # at most two engines open: the serving one and the one being loaded
                close_all(detectors)
                release_memory()
            engine, detector = manager.load(precision, force=force)
            detectors = warm_detectors(manager, engine, detector, self._pipeline.workers, self._stop)
        served_before = Parked(self._serving(), self._engine_for)
        previous = self._pipeline.swap_detectors(detectors)
        self._engine_for = tuple(frame_size)
        if keep_previous:
            self._pipeline.park(previous, served_before)
        else:
            close_all(previous)
        release_memory()
        return engine


def close_all(detectors):
    for detector in detectors:
        detector.close()
