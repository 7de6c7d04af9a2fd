"""A rebuild ordered while detecting: built in a child process, checked, and swapped in between two frames.

Hot: the serving engine keeps detecting during the build. Paused: inference stops for the build, on a
device whose memory cannot hold the serving engine, the build and the new engine at once. `auto`
decides from what is measured: it builds hot when the available memory (psutil; on a Jetson the CPU
and GPU share it) is at least twice the serving engine's file, plus the builder's workspace, plus
BUILDER_OVERHEAD for the build process itself (TensorRT's and CUDA's libraries, ONNX parsing).
One build at a time; a failed build leaves the serving engine in place and says why.
"""
import logging
import os
import threading

from appliance import files
from appliance.errors import Cancelled, FacewatchError
from appliance.remote.envelope import Rejected

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
    """A rebuild facewatch orders itself when the camera's frames change size: a command without a sender
    (its replies go to the log; the engine topic says the rest)."""

    def __init__(self, frame_size):
        self.frame_size = frame_size
        self.id = "camera-{}x{}".format(*frame_size)

    def reply(self, state, ok=True, **fields):
        log.info("engine for %s frames: %s%s", "x".join(map(str, self.frame_size)), state,
                 ": " + fields["error"] if fields.get("error") else "")


class Rebuilder:
    def __init__(self, make_manager, pipeline, serving, on_served, settings, supervisor, stop_event,
                 frame_size, measure_memory=available_memory):
        """make_manager(report, frame_size) -> EngineManager; serving() -> the Engine in use;
        on_served(engine, error) republishes the engine state after a rebuild (the new engine, or the old one
        with the error); frame_size() -> (width, height) of the camera's frames now."""
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
        self._pending_size = None
        self._refused_sizes = set()
        self.running = None

    def start(self, command, precision, force):
        """Accept the rebuild (reply `accepted`) and run it on its own thread; Rejected if one is running."""
        with self._lock:
            if self.running is not None:
                raise Rejected("a rebuild is already running (id {})".format(self.running))
            self.running = command.id
        mode, why = choose_mode(self._settings.rebuild_mode, os.path.getsize(self._serving().path),
                                self._settings.workspace_mb, self._measure_memory())
        command.reply("accepted", mode=mode, mode_reason=why, precision=precision, force=force,
                      inference="paused during the build" if mode == "paused" else "continues during the build")
        log.info("rebuild %s: %s %s (%s)", command.id, precision, mode, why)
        frame_size = getattr(command, "frame_size", None) or self._frame_size()
        self._supervisor.start("rebuild", lambda: self._run(command, precision, force, mode, frame_size),
                               may_end=True)

    def reshape(self, frame_size):
        """The camera now delivers frames of frame_size: build (or reuse) the matching engine and switch to
        it, hot by the same rule as a rebuild. Once a build is running, the newest size waits for it; a size
        whose build failed is not tried again (the engine topic says why)."""
        if frame_size in self._refused_sizes:
            return
        try:
            self.start(CameraOrder(frame_size), self._settings.precision, False)
        except Rejected:
            self._pending_size = frame_size

    def _run(self, command, precision, force, mode, frame_size):
        try:
            if mode == "paused":
                self._pipeline.pause()
            engine = self._build_and_swap(command, precision, force, frame_size)
            self._on_served(engine, None)
            command.reply("done", precision=engine.precision, requested_precision=precision, key=engine.name,
                          built=engine.built_now, fallback_reason=engine.fallback_reason,
                          latency_ms=engine.latency_ms, choice_reason=engine.choice_reason)
        except Cancelled:
            self._on_served(self._serving(), "rebuild {} stopped: facewatch stopped".format(command.id))
            command.reply("failed", ok=False, error="stopped: facewatch is stopping")
        except FacewatchError as exc:
            log.warning("rebuild %s failed: %s; the serving engine stays", command.id, exc)
            if isinstance(command, CameraOrder):
                self._refused_sizes.add(frame_size)
            self._on_served(self._serving(), "rebuild {} failed: {}".format(command.id, exc))
            command.reply("failed", ok=False, error="{}; the serving engine stays".format(exc))
        finally:
            self._pipeline.resume()
            with self._lock:
                self.running = None
            self._start_pending()

    def _start_pending(self):
        size, self._pending_size = self._pending_size, None
        if size is not None and not self._stop.is_set():
            self.reshape(size)

    def _build_and_swap(self, command, precision, force, frame_size):
        reported = {"phase": None, "progress": -1.0}

        def progress(**fields):
            phase, fraction = fields.get("phase"), fields.get("progress") or 0.0
            if fields.get("state") == "building" and (
                    phase != reported["phase"] or fraction - reported["progress"] >= PROGRESS_EVERY):
                reported.update(phase=phase, progress=fraction)
                command.reply("progress", phase=phase, fraction=round(fraction, 3), eta_s=fields.get("eta_s"))
        manager = self._make_manager(progress, frame_size)
        engine, detector = manager.load(precision, force=force)
        for previous in self._pipeline.swap_detectors(
                warm_detectors(manager, engine, detector, self._pipeline.workers, self._stop)):
            previous.close()
        return engine
