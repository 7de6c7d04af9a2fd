"""Which engine shape serves while the camera's frame size moves: a size is followed only once it has held.

The engine is shaped to the frames (appliance.engine.shapes); frames of another size are letterboxed into it,
which is correct but wastes pixels. The pipeline hands every frame's size to ShapeFollower.seen() (a
comparison per frame); a size that needs another engine is followed only once it has held for HOLD_S
and MIN_FRAMES frames, or BUILD_HOLD_S when its engine must be built first. So a camera flapping
faster than HOLD_S never switches, a slower one at most once per hold (which doubles with each switch
until a size has held for CALM_S), and a build (minutes on a Jetson) is started only for a size that
held half a minute; a size whose build failed is not tried again. After every switch the frames then
arriving are compared with the new engine, so a size that changed during the switch is followed in
turn: the serving engine always ends on the frames' size.
"""
import logging
import threading
import time

from appliance.engine.shapes import describe

log = logging.getLogger(__name__)

# A size change is followed once the new size has held this long: a camera renegotiating, or a burst of
# odd frames, switches nothing, and a flapping camera switches at most once per HOLD_S. Switching to an
# engine in the cache (or the one kept open) costs a load and a warm-up, a fraction of a second.
HOLD_S = 2.0
# ... and for at least this many frames taken by inference (a slow camera's lone frame holds nothing).
MIN_FRAMES = 3
# When no engine for the new size is cached it must be built: minutes on a Jetson, with the CPU and the
# memory that detection needs. The size must hold this long first, so that a flapping camera cannot
# cause a rebuild storm. Waived for the first switch when the serving engine never fitted a frame (it was
# built for the configured or the default size before the camera delivered): nothing to flap back to.
BUILD_HOLD_S = 30.0
# A camera that keeps changing size more slowly than HOLD_S would still switch every few seconds (a load,
# seconds on a Jetson where memory holds one engine): each switch doubles the hold, up to BUILD_HOLD_S,
# until the camera is calm again: a size that held CALM_S brings it back to HOLD_S.
CALM_S = 60.0
# Frame sizes remembered with their engine shape (a camera has few).
SHAPES_REMEMBERED = 16


def size_list(size):
    return list(size) if size else None


class ShapeFollower:
    def __init__(self, shape_of, engines, clock=time.monotonic, hold_s=HOLD_S, build_hold_s=BUILD_HOLD_S,
                 min_frames=MIN_FRAMES):
        """shape_of(frame_size) -> the engine shape (network input size) for frames of that size. engines (a
        Rebuilder) tells what serves and switches: serving() -> (frame size the serving engine was made
        for, its shape); busy() -> True while a switch or a rebuild runs; switching() -> the frame size a
        running switch is for, or None; refusal(shape) -> why an engine of that shape could not be built,
        or None; cached(frame_size) -> True when no build is needed for it; switch(frame_size) -> True
        when the switch was started (it runs on its own thread)."""
        self._shape_of = shape_of
        self._engines = engines
        self._clock = clock
        self.hold_s = hold_s
        self.build_hold_s = build_hold_s
        self.min_frames = min_frames
        self._lock = threading.Lock()
        self._shapes = {}
        self._frames = None         # the size of the frames now arriving
        self._since = None          # since when they have that size
        self._count = 0             # frames of that size since then
        self._mismatched = False    # some of them met an engine of another shape
        self._asked = False         # a switch was asked for them (or refused)
        self._needs_build = None    # whether their engine must be built (asked once, when it matters)
        self._shaped_once = False   # an engine was shaped to frames seen: one fitted, or a switch was asked
        self._streak = 0            # switches since the camera was last calm
        self.switches = 0
        self.held_back = 0

    def shape_of(self, frame_size):
        shape = self._shapes.get(frame_size)
        if shape is None:
            if len(self._shapes) >= SHAPES_REMEMBERED:
                self._shapes.clear()
            shape = self._shapes[frame_size] = tuple(self._shape_of(frame_size))
        return shape

    def seen(self, frame_size):
        """A frame of frame_size (width, height) was taken for inference; switches once the size has held."""
        now = self._clock()
        with self._lock:
            if frame_size != self._frames:
                if self._mismatched and not self._asked:
                    self.held_back += 1
                self._frames, self._since, self._count = frame_size, now, 0
                self._mismatched = self._asked = False
                self._needs_build = None
            self._count += 1
            if now - self._since >= CALM_S:
                self._streak = 0
            shape = self.shape_of(frame_size)
            if shape == self._engines.serving()[1]:
                self._shaped_once = True
                return
            self._mismatched = True
            if self._asked or self._engines.busy():
                return
            held = now - self._since
            if held < self._hold() or self._count < self.min_frames:
                return
            if self._engines.refusal(shape) is not None:
                self._asked = True
                return
            if self._needs_build is None:
                self._needs_build = not self._engines.cached(frame_size)
            if self._needs_build and self._shaped_once and held < self.build_hold_s:
                return
            if not self._engines.switch(frame_size):
                return  # a rebuild got there first: asked again on a later frame
            self._asked = self._shaped_once = True
            self.switches += 1
            self._streak += 1
        log.info("camera: frames are now %s; switching to the engine for that size (the size held %.1f s%s)",
                 describe(frame_size), held, "; its engine is built first" if self._needs_build else "")

    def _hold(self):
        """How long a size must hold before a switch to a cached engine now."""
        return min(self.hold_s * 2 ** self._streak, max(self.hold_s, self.build_hold_s))

    def stats(self):
        """{frames, engine_for, pending, switches, held_back, reason}: telemetry's engine.shape."""
        with self._lock:
            frames, since, count, needs_build = self._frames, self._since, self._count, self._needs_build
            shaped_once, switches, held_back = self._shaped_once, self.switches, self.held_back
        engine_for, serving_shape = self._engines.serving()
        switching = self._engines.switching()
        fits = frames is not None and self.shape_of(frames) == serving_shape
        pending = switching or (None if fits or frames is None else frames)
        return {"frames": size_list(frames), "engine_for": size_list(engine_for), "pending": size_list(pending),
                "switches": switches, "held_back": held_back,
                "reason": self._reason(frames, engine_for, fits, switching, since, count, needs_build, shaped_once)}

    def _reason(self, frames, engine_for, fits, switching, since, count, needs_build, shaped_once):
        serving = "the {} engine".format(describe(engine_for))
        if frames is None:
            return "{} serves; no frame has been taken yet".format(serving)
        if switching:
            return "switching to the {} engine; {} serves meanwhile".format(describe(switching), serving)
        if fits:
            return "{} serves {} frames".format(serving, describe(frames))
        mismatch = "serving {} for {} frames (letterboxed)".format(serving, describe(frames))
        refusal = self._engines.refusal(self.shape_of(frames))
        if refusal is not None:
            return "{}: the {} engine could not be built ({}); not tried again".format(
                mismatch, describe(frames), refusal[:300])
        if self._engines.busy():
            return "{} until the rebuild under way ends".format(mismatch)
        if needs_build and shaped_once:
            return "{} until that size has held {:g} s: its engine must be built first".format(
                mismatch, self.build_hold_s)
        with self._lock:
            hold = self._hold()
        if self._clock() - since >= hold and count >= self.min_frames:
            return "{}: the switch is due".format(mismatch)
        return "{} until that size has held {:g} s".format(mismatch, hold)
