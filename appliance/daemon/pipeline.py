"""capture -> inference (one or more threads) -> publish, joined by a bounded, ordered hand-over and one stop event.

The camera thread keeps only the newest frame (older ones are counted as dropped). A frame grabbed before
the pipeline started (left waiting while the engine was built) is skipped and counted (stale), never
processed: its detections would be as late as the build was long. Each inference thread has its own
detector and takes the camera's newest frame in turn with a ticket; it runs pre-processing, the engine
and post-processing and times each. Results reach the publish thread in the order their frames were
taken (InOrder), whichever thread finishes first, so detections are never published out of order.
The publish thread serialises and hands results to MQTT, so a slow broker never holds the engine.
Every frame's size is reported (on_frame_size), in frame order, so that the daemon can switch to the
engine shaped for them once a size has held. Besides the serving detectors, one set may be kept open
unused (park): the engine served before, for a quick switch back; closed with the others at the end.
`on_progress` is called after every frame processed, and on idle waits while no frame is in flight: a
stalled engine stops calling it, even while another inference thread could go on (its results wait for
the stalled frame, and no thread runs ahead by more than the window). The loops run under the daemon's
Supervisor: an exception ends the daemon with its cause, never only a log line.
"""
import collections
import threading
import time
from typing import NamedTuple

from appliance.errors import Cancelled
from appliance.timings import RateMeter, StageTimings

STAGES = ("frame_age", "preprocess", "inference", "postprocess", "publish", "total")

Result = NamedTuple("Result", [("frame", object), ("detections", object), ("latency", float)])


class InOrder:
    """Tickets handed out in frame order; results released in ticket order, at most `maxsize` waiting for the
    publisher (the oldest dropped and counted beyond that). No ticket is handed out more than `window`
    ahead of the oldest one not yet released, nor once `stop` is set."""

    def __init__(self, maxsize, window, stop):
        self._condition = threading.Condition()
        self._stop = stop
        self._maxsize = maxsize
        self._window = window
        self._issued = 0
        self._released = 0
        self._finished = {}
        self._ready = collections.deque()
        self.dropped = 0

    def ticket(self, timeout):
        """The next ticket, or None when the window stayed full for `timeout` seconds or stop is set."""
        with self._condition:
            room = self._condition.wait_for(
                lambda: self._stop.is_set() or self._issued - self._released < self._window, timeout)
            if not room or self._stop.is_set():
                return None
            self._issued += 1
            return self._issued - 1

    def put(self, ticket, result):
        """The result of `ticket`; None when its frame gave none (it is skipped)."""
        with self._condition:
            self._finished[ticket] = result
            while self._released in self._finished:
                released = self._finished.pop(self._released)
                self._released += 1
                if released is not None:
                    self._ready.append(released)
            while len(self._ready) > self._maxsize:
                self._ready.popleft()
                self.dropped += 1
            self._condition.notify_all()

    def get(self, timeout):
        """The next result in order, or None after `timeout` seconds."""
        with self._condition:
            if self._condition.wait_for(lambda: self._ready, timeout):
                return self._ready.popleft()
            return None

    def in_flight(self):
        with self._condition:
            return self._issued - self._released

    def empty(self):
        with self._condition:
            return not self._ready


class Slot:
    """One inference thread's detector; swapped between two of its frames."""

    def __init__(self, detector):
        self.detector = detector
        self.lock = threading.Lock()


class Pipeline:
    def __init__(self, camera, detectors, publish, stop_event, on_progress=None, on_frame_size=None, queue_size=8):
        """detectors: one per inference thread. on_frame_size(size) is called on an inference thread with each
        frame's (width, height) as it is taken, in frame order (cheap: it runs under the lock frames are
        taken with)."""
        if not detectors:
            raise ValueError("a pipeline needs at least one detector")
        self.camera = camera
        self._slots = [Slot(detector) for detector in detectors]
        self._publish = publish
        self._stop = stop_event
        self._on_progress = on_progress or (lambda: None)
        self._on_frame_size = on_frame_size or (lambda size: None)
        window = 2 * len(detectors)
        # a slow frame holds back up to window - 1 finished ones, all released at once: room for them too
        self._order = InOrder(queue_size + window, window, stop_event)
        self._take_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._closed = False
        self._parked = None     # (tag, detectors) kept open, unused
        self._count_lock = threading.Lock()
        self.timings = StageTimings(STAGES)
        self.inference_rate = RateMeter()
        self.publish_rate = RateMeter()
        self.processed = 0
        self.paused_skipped = 0
        self.stale_skipped = 0   # grabbed before the pipeline started: not processed
        self._started_at = None
        self.idle = threading.Event()
        self._paused = threading.Event()

    @property
    def workers(self):
        return len(self._slots)

    @property
    def threads(self):
        """The names of the pipeline's threads, as the Supervisor knows them."""
        return tuple("inference-{}".format(number) for number in range(1, self.workers + 1)) + ("publish",)

    @property
    def queue_dropped(self):
        return self._order.dropped

    def start(self, supervisor):
        self._started_at = time.monotonic()
        for name, slot in zip(self.threads, self._slots):
            supervisor.start(name, lambda slot=slot: self._inference_loop(slot))
        supervisor.start("publish", self._publish_loop)
        return self

    def swap_detectors(self, detectors):
        """Serve with `detectors` (one per inference thread), each from its thread's next frame on; returns
        the ones they replace (no frame is using them). Once the pipeline's detectors were closed (facewatch
        is stopping), closes `detectors` instead and raises Cancelled."""
        if len(detectors) != len(self._slots):
            raise ValueError("{} detectors for {} inference threads".format(len(detectors), len(self._slots)))
        with self._swap_lock:
            if self._closed:
                for detector in detectors:
                    detector.close()
                raise Cancelled("facewatch is stopping; the new engine was not put to use")
            previous = []
            for slot, detector in zip(self._slots, detectors):
                with slot.lock:
                    previous.append(slot.detector)
                    slot.detector = detector
            return previous

    def park(self, detectors, tag):
        """Keep `detectors` open, unused, beside the serving ones; `tag` says what they are (parked()).
        One set at most: one parked before is closed. Once the pipeline's detectors were closed (facewatch
        is stopping), closes `detectors` at once."""
        with self._swap_lock:
            if self._closed:
                closing = list(detectors)
            else:
                closing = self._parked[1] if self._parked else []
                self._parked = (tag, list(detectors))
        for detector in closing:
            detector.close()

    def parked(self):
        """The tag of the parked detectors, or None."""
        parked = self._parked
        return parked[0] if parked else None

    def unpark(self):
        """(tag, detectors) parked, now the caller's to use or close; (None, []) when none are."""
        with self._swap_lock:
            parked, self._parked = self._parked, None
        return parked or (None, [])

    def close_detectors(self, stuck=()):
        """Close the serving detectors, except those of threads named in `stuck` (still running), and the
        parked ones; a later swap_detectors or park closes what it brings."""
        locked = self._swap_lock.acquire(timeout=1.0)   # not held for long unless a swap waits on a stuck thread
        try:
            self._closed = True
            for name, slot in zip(self.threads, self._slots):
                if name not in stuck:
                    slot.detector.close()
            parked, self._parked = self._parked, None
            for detector in parked[1] if parked else ():
                detector.close()
        finally:
            if locked:
                self._swap_lock.release()

    @property
    def preprocessing(self):
        """Where frames become tensors for the serving detectors ("cpu", "gpu", or "cpu: why not the GPU");
        read without waiting for a frame in progress."""
        return self._slots[0].detector.preprocessing

    def pause(self):
        """Stop inference (frames are skipped, counted by the camera) until resume()."""
        self._paused.set()

    def resume(self):
        self._paused.clear()

    def _inference_loop(self, slot):
        while not self._stop.is_set():
            taken = self._take()
            if taken is None:
                self._on_idle()
                continue
            ticket, frame = taken
            result = None
            try:
                with slot.lock:
                    result = self._process(frame, slot.detector)
            finally:
                self._order.put(ticket, result)
            self._on_progress()

    def _take(self):
        """(ticket, frame): this thread's next frame, or None when there is none to take now. Tickets are
        handed out with frames under one lock, so their order is the frames' order."""
        with self._take_lock:
            ticket = self._order.ticket(timeout=0.5)
            if ticket is None:
                return None
            frame = self._fresh_frame(timeout=0.5)
            if frame is not None and self._paused.is_set():
                self._count("paused_skipped")
                frame = None
            if frame is None:
                self._order.put(ticket, None)
                if self._order.in_flight() == 0:
                    self.idle.set()
                return None
            self.idle.clear()
            self._on_frame_size((frame.image.shape[1], frame.image.shape[0]))
            return ticket, frame

    def _fresh_frame(self, timeout):
        """The camera's newest frame grabbed since the pipeline started, or None after `timeout` s. One grabbed
        before (a live camera's, waiting while the engine was built) is skipped and counted, and the next one
        taken. A file's frames wait for the pipeline and are stamped when the clip starts: none is skipped."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.camera.latest(timeout=max(0.0, deadline - time.monotonic()))
            if frame is None or frame.captured >= self._started_at:
                return frame
            self._count("stale_skipped")

    def _on_idle(self):
        """No frame taken: that is progress only while no other thread holds a frame (a stalled one does)."""
        if self.idle.is_set():
            self._on_progress()
        if self.camera.finished() or self._paused.is_set():
            self._stop.wait(0.5)

    def _count(self, name):
        with self._count_lock:
            setattr(self, name, getattr(self, name) + 1)

    def _process(self, frame, detector):
        started = time.monotonic()
        tensor, letterbox = detector.preprocess(frame.image)
        preprocessed = time.monotonic()
        outputs = detector.infer(tensor)
        inferred = time.monotonic()
        detections = detector.postprocess(outputs, letterbox)
        done = time.monotonic()
        for stage, seconds in (("frame_age", started - frame.captured), ("preprocess", preprocessed - started),
                               ("inference", inferred - preprocessed), ("postprocess", done - inferred)):
            self.timings.add(stage, seconds)
        self._count("processed")
        self.inference_rate.tick()
        return Result(frame, detections, done - frame.captured)

    def _publish_loop(self):
        while not (self._stop.is_set() and self._order.empty()):
            result = self._order.get(timeout=0.5)
            if result is None:
                continue
            started = time.monotonic()
            self._publish(result)
            self.publish_rate.tick()
            self.timings.add("publish", time.monotonic() - started)
            self.timings.add("total", time.monotonic() - result.frame.captured)

    def stats(self):
        return {
            "fps": {"capture": self.camera.capture_rate.rate(), "inference": self.inference_rate.rate(),
                    "publish": self.publish_rate.rate()},
            "latency_ms": self.timings.percentiles(),
            "dropped_frames": {"camera": self.camera.dropped, "queue": self.queue_dropped,
                               "paused": self.paused_skipped, "stale": self.stale_skipped},
            "processed": self.processed,
            "paused": self._paused.is_set(),
        }
