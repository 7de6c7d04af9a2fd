"""capture -> inference -> publish, each on its own thread, joined by bounded queues and one stop event.

The camera thread keeps only the newest frame (older ones are counted as dropped). The inference thread
runs pre-processing, the engine and post-processing and times each. The publish thread serialises and
hands results to MQTT, so a slow broker never holds the engine. Frames whose size changes are reported
(on_frame_size), so that the daemon can switch to the engine shaped for them. `on_progress` is called after every
frame processed and every idle wait on the camera: a stalled engine stops calling it. Both loops run
under the daemon's Supervisor: an exception ends the daemon with its cause, never only a log line.
"""
import queue
import threading
import time
from typing import NamedTuple

from appliance.timings import RateMeter, StageTimings

STAGES = ("frame_age", "preprocess", "inference", "postprocess", "publish", "total")

Result = NamedTuple("Result", [("frame", object), ("detections", object), ("latency", float)])


class Pipeline:
    def __init__(self, camera, detector, publish, stop_event, on_progress=None, on_frame_size=None, queue_size=8):
        """on_frame_size(size) is called on the inference thread when the frames' (width, height) changes."""
        self.camera = camera
        self._detector = detector
        self._publish = publish
        self._stop = stop_event
        self._on_progress = on_progress or (lambda: None)
        self._on_frame_size = on_frame_size or (lambda size: None)
        self._frame_size = None
        self._results = queue.Queue(maxsize=queue_size)
        self.timings = StageTimings(STAGES)
        self.inference_rate = RateMeter()
        self.publish_rate = RateMeter()
        self.processed = 0
        self.queue_dropped = 0
        self.paused_skipped = 0
        self.idle = threading.Event()
        self._detector_lock = threading.Lock()
        self._paused = threading.Event()

    THREADS = ("inference", "publish")

    def start(self, supervisor):
        supervisor.start("inference", self._inference_loop)
        supervisor.start("publish", self._publish_loop)
        return self

    def swap_detector(self, detector):
        """Serve with `detector` from the next frame on; returns the one it replaces (no frame is using it)."""
        with self._detector_lock:
            previous, self._detector = self._detector, detector
        return previous

    @property
    def preprocessing(self):
        """Where frames become tensors for the serving detector ("cpu", "gpu", or "cpu: why not the GPU")."""
        with self._detector_lock:
            return self._detector.preprocessing

    def pause(self):
        """Stop inference (frames are skipped, counted by the camera) until resume()."""
        self._paused.set()

    def resume(self):
        self._paused.clear()

    def _inference_loop(self):
        while not self._stop.is_set():
            frame = self.camera.latest(timeout=0.5)
            if frame is not None and self._paused.is_set():
                self.paused_skipped += 1
            if frame is None or self._paused.is_set():
                self.idle.set()
                self._on_progress()
                if self.camera.finished() or self._paused.is_set():
                    self._stop.wait(0.5)
                continue
            self.idle.clear()
            self._note_frame_size(frame.image)
            with self._detector_lock:
                result = self._process(frame, self._detector)
            self._results_put(result)
            self._on_progress()

    def _note_frame_size(self, image):
        size = (image.shape[1], image.shape[0])
        if size != self._frame_size:
            self._frame_size = size
            self._on_frame_size(size)

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
        self.processed += 1
        self.inference_rate.tick()
        return Result(frame, detections, done - frame.captured)

    def _results_put(self, result):
        while True:
            try:
                self._results.put_nowait(result)
                return
            except queue.Full:
                try:
                    self._results.get_nowait()
                    self.queue_dropped += 1
                except queue.Empty:
                    pass

    def _publish_loop(self):
        while not (self._stop.is_set() and self._results.empty()):
            try:
                result = self._results.get(timeout=0.5)
            except queue.Empty:
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
                               "paused": self.paused_skipped},
            "processed": self.processed,
            "paused": self._paused.is_set(),
        }
