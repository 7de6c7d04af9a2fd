"""The pipeline's inference threads: results published in frame order whichever thread finishes first,
detectors swapped together, and a stalled thread stops the progress that feeds the watchdog."""
import threading
import time

import numpy as np
import pytest

from appliance.daemon.app import THREAD_STOP_TIMEOUT
from appliance.errors import Cancelled
from appliance.daemon.pipeline import InOrder, Pipeline
from appliance.daemon.supervisor import Supervisor
from appliance.camera.capture import Frame

WAIT = 30


class Frames:
    """A camera with `count` frames ready one after another; `asked` is set each time the pipeline found
    no frame to take (it then asks whether the source is finished)."""

    def __init__(self, count):
        self.count = count
        self.handed = 0
        self.handed_out = {}
        self.asked = threading.Event()
        self.lock = threading.Lock()

    def latest(self, timeout):
        with self.lock:
            if self.handed >= self.count:
                return None
            index, self.handed = self.handed, self.handed + 1
        self.frame_handed(index).set()
        return Frame(np.full((1, 1), index), index, time.monotonic(), time.time())

    def frame_handed(self, index):
        return self.handed_out.setdefault(index, threading.Event())

    def finished(self):
        self.asked.set()
        return self.handed >= self.count


class Detector:
    """Detections are the frame's index (its one pixel); infer() on a frame waits for hold[index] if given."""

    def __init__(self, hold=None):
        self.hold = hold or {}
        self.frames = []
        self.closed = False
        self.preprocessing = "cpu"

    def preprocess(self, image):
        return image, None

    def infer(self, tensor):
        index = int(tensor[0, 0])
        if index in self.hold:
            assert self.hold[index].wait(WAIT)
        return index

    def postprocess(self, outputs, letterbox):
        self.frames.append(outputs)
        return outputs

    def close(self):
        self.closed = True


@pytest.fixture
def run_pipeline():
    stop = threading.Event()
    running = []

    def start(camera, detectors, results=None, default_queue=False, **kwargs):
        """-> (pipeline, the detections published, supervisor); whole results also go to `results` if given.
        The queue to the publisher is made too large to drop any, unless `default_queue`."""
        published = []

        def publish(result):
            published.append(result.detections)
            if results is not None:
                results.append(result)
        if not default_queue:
            kwargs["queue_size"] = 100000   # the test publishes all: none dropped for a slow publisher
        pipeline = Pipeline(camera, detectors, publish, stop, **kwargs)
        supervisor = Supervisor(stop)
        pipeline.start(supervisor)
        running.append((pipeline, supervisor))
        return pipeline, published, supervisor
    yield start
    stop.set()
    for pipeline, supervisor in running:
        assert supervisor.join(pipeline.threads, 10) == []
        assert supervisor.failure is None


def wait_for(condition, message):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.005)


def test_results_are_published_in_frame_order_when_a_later_frame_finishes_first(run_pipeline):
    camera = Frames(40)
    # whichever thread takes frame 0 holds it until frame 2 was handed out: by then the other thread has
    # processed frame 1 and handed its result over first
    hold = {0: camera.frame_handed(2)}
    detectors = [Detector(hold), Detector(hold)]
    pipeline, published, _ = run_pipeline(camera, detectors)
    wait_for(lambda: len(published) == 40, "every frame published")
    assert published == list(range(40))
    assert pipeline.processed == 40
    first = next(detector for detector in detectors if 0 in detector.frames)
    assert 1 not in first.frames


class MeetingDetector(Detector):
    """Its first inference waits until the other thread's first inference runs too."""

    def __init__(self, barrier):
        super().__init__()
        self.barrier = barrier

    def infer(self, tensor):
        if not self.frames:
            self.barrier.wait(WAIT)
        return super().infer(tensor)


def test_two_inference_threads_run_at_once_each_with_its_detector(run_pipeline):
    camera = Frames(200)
    meet = threading.Barrier(2)
    detectors = [MeetingDetector(meet), MeetingDetector(meet)]
    pipeline, published, supervisor = run_pipeline(camera, detectors)
    assert pipeline.threads == ("inference-1", "inference-2", "publish")
    wait_for(lambda: len(published) == 200, "every frame published")
    assert published == list(range(200))
    assert all(detector.frames for detector in detectors)
    assert set(pipeline.threads) <= set(supervisor.alive())


def test_a_stalled_inference_thread_stops_progress_although_the_other_could_go_on(run_pipeline):
    camera = Frames(1000)
    release = threading.Event()
    progress = []
    hold = {0: release}   # whichever thread takes frame 0 stalls on it
    pipeline, published, _ = run_pipeline(camera, [Detector(hold), Detector(hold)],
                                          on_progress=lambda: progress.append(1))
    assert camera.asked.wait(WAIT)   # the other thread found no ticket: the window is full
    assert published == []            # frames after the stalled one wait for it
    assert camera.handed == 4 and len(progress) == 3 and pipeline.processed == 3
    camera.asked.clear()
    assert camera.asked.wait(WAIT)    # and it stays so
    assert len(progress) == 3 and camera.handed == 4
    release.set()
    wait_for(lambda: len(published) == 1000, "every frame published after the stall")
    assert published == list(range(1000))


class Until:
    """Waited on as an Event: until `condition()` holds."""

    def __init__(self, condition):
        self.condition = condition

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


def test_a_slow_frame_among_eight_inference_threads_loses_no_result_with_the_default_queue(run_pipeline):
    """Frame 0 is held until the 15 frames taken after it (the window of 16) were processed; then all 16
    results reach the publisher at once, and the default queue has room for them."""
    camera, detectors = Frames(16), []
    others_done = Until(lambda: sum(len(detector.frames) for detector in detectors) == 15)
    detectors.extend(Detector({0: others_done}) for _ in range(8))
    pipeline, published, _ = run_pipeline(camera, detectors, default_queue=True)
    wait_for(lambda: len(published) + pipeline.queue_dropped == 16, "every frame published or dropped")
    assert pipeline.queue_dropped == 0   # telemetry's dropped_frames.queue
    assert published == list(range(16))


def test_stopping_with_a_stalled_thread_ends_every_other_thread_within_the_stop_timeout():
    camera, stop = Frames(1000), threading.Event()
    release = threading.Event()
    hold = {0: release}
    pipeline = Pipeline(camera, [Detector(hold) for _ in range(16)], lambda result: None, stop)
    supervisor = Supervisor(stop)
    pipeline.start(supervisor)
    assert camera.asked.wait(WAIT)   # the window is full behind the stalled frame
    stop.set()
    deadline = time.monotonic() + THREAD_STOP_TIMEOUT   # the daemon's wait for its threads at stop
    # one after another, 15 threads waiting 0.5 s each on the full window would take 7.5 s
    wait_for(lambda: len([name for name in supervisor.alive() if name in pipeline.threads]) == 1,
             "all but the stalled thread to end")
    assert time.monotonic() < deadline
    assert pipeline.preprocessing == "cpu"    # read while the stalled thread holds its detector
    release.set()
    assert supervisor.join(pipeline.threads, timeout=WAIT) == []


def test_detectors_are_swapped_together_and_the_old_ones_returned():
    old, new = [Detector(), Detector()], [Detector(), Detector()]
    pipeline = Pipeline(Frames(0), old, None, threading.Event())
    assert pipeline.swap_detectors(new) == old
    with pytest.raises(ValueError, match="1 detectors for 2 inference threads"):
        pipeline.swap_detectors([Detector()])
    pipeline.close_detectors(stuck=("inference-2",))
    assert [detector.closed for detector in new] == [True, False]


def test_detectors_brought_after_the_pipeline_closed_are_closed_not_served():
    pipeline = Pipeline(Frames(0), [Detector(), Detector()], None, threading.Event())
    pipeline.close_detectors()
    late = [Detector(), Detector()]
    with pytest.raises(Cancelled):
        pipeline.swap_detectors(late)
    assert all(detector.closed for detector in late)


def test_in_order_releases_by_ticket_and_drops_the_oldest_beyond_its_size():
    order = InOrder(maxsize=2, window=8, stop=threading.Event())
    tickets = [order.ticket(0) for _ in range(5)]
    assert tickets == [0, 1, 2, 3, 4]
    assert order.ticket(0) is not None and order.in_flight() == 6
    for ticket in (4, 3, 1):
        order.put(ticket, "r{}".format(ticket))
    assert order.get(0) is None                  # ticket 0 is not back yet
    order.put(0, "r0")
    assert [order.get(0), order.get(0)] == ["r0", "r1"]
    order.put(2, None)                           # ticket 2's frame gave no result: skipped
    order.put(5, "r5")
    assert order.dropped == 1                    # r3, r4, r5 were ready: the oldest beyond 2 dropped
    assert [order.get(0), order.get(0), order.get(0)] == ["r4", "r5", None]
    assert order.in_flight() == 0


def test_in_order_hands_out_no_ticket_beyond_its_window():
    order = InOrder(maxsize=8, window=2, stop=threading.Event())
    assert [order.ticket(0), order.ticket(0), order.ticket(0)] == [0, 1, None]
    order.put(1, "r1")
    assert order.ticket(0) is None               # ticket 0 still holds the window
    order.put(0, "r0")
    assert order.ticket(0) == 2


class SizedFrames(Frames):
    """Frames whose image has the size `sizes[index]` (width, height)."""

    def __init__(self, sizes):
        super().__init__(len(sizes))
        self.sizes = sizes

    def latest(self, timeout):
        frame = super().latest(timeout)
        if frame is None:
            return None
        width, height = self.sizes[frame.index]
        image = np.full((height, width), frame.index)
        return frame._replace(image=image)


def test_every_frames_size_is_reported_in_frame_order(run_pipeline):
    """The shape follower sees how long a size held, not only that it changed."""
    sizes = [(4, 3)] * 5 + [(16, 9)] * 2 + [(4, 3)] * 5
    seen = []
    _, published, _ = run_pipeline(SizedFrames(sizes), [Detector(), Detector()], on_frame_size=seen.append)
    wait_for(lambda: len(published) == len(sizes), "every frame published")
    assert seen == sizes


def test_detectors_parked_beside_the_serving_ones_are_closed_when_the_pipeline_closes():
    pipeline = Pipeline(Frames(0), [Detector(), Detector()], None, threading.Event())
    kept = [Detector(), Detector()]
    pipeline.park(kept, "the engine served before")
    assert pipeline.parked() == "the engine served before" and not any(d.closed for d in kept)
    pipeline.close_detectors()
    assert all(detector.closed for detector in kept) and pipeline.parked() is None
    late = [Detector(), Detector()]
    pipeline.park(late, "after the end")
    assert all(detector.closed for detector in late) and pipeline.parked() is None


def test_parking_another_set_closes_the_one_parked_before():
    pipeline = Pipeline(Frames(0), [Detector(), Detector()], None, threading.Event())
    first, second = [Detector(), Detector()], [Detector(), Detector()]
    pipeline.park(first, "first")
    pipeline.park(second, "second")
    assert all(d.closed for d in first) and not any(d.closed for d in second)
    assert pipeline.unpark() == ("second", second) and pipeline.unpark() == (None, [])


class AnyFrame(Detector):
    """Takes a camera's real frames: its detections are the number of frames it has processed."""

    def infer(self, tensor):
        return len(self.frames)


@pytest.fixture
def camera_thread():
    """Start a real Camera on `source` (its own thread); -> the camera once its first frame was grabbed."""
    from appliance.config import schema as configuration
    from appliance.camera.capture import Camera
    stop = threading.Event()
    threads = []

    def start(source, **settings):
        camera = Camera(configuration.defaults().camera._replace(source=source, **settings), stop)
        thread = threading.Thread(target=camera.run, daemon=True)
        thread.start()
        threads.append(thread)
        assert camera.wait_for_frame_size(WAIT) is not None, camera.problem()
        return camera
    yield start
    stop.set()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


BUILD = 1.5   # seconds the engine takes to be ready after the camera's first frame


def test_a_live_cameras_frame_grabbed_while_the_engine_was_built_is_skipped_not_detected_late(
        run_pipeline, camera_thread, clip):
    """The first detection after start once came 2.1 s late: a frame grabbed before the engine was built."""
    from mjpeg_server import MjpegCamera, load_jpegs
    source = MjpegCamera(load_jpegs(clip[0], limit=10), fps=20.0).start()
    try:
        camera = camera_thread(source.url, stall_timeout=30.0)
        source.hang()        # the frame grabbed stays the newest while the engine is being built
        time.sleep(BUILD)
        source.resume()
        results = []
        started = time.monotonic()
        pipeline, published, _ = run_pipeline(camera, [AnyFrame()], results=results)
        wait_for(lambda: results, "a detection")
        first = results[0]
        assert first.frame.captured >= started, "a frame grabbed {:.2f} s before the pipeline started".format(
            started - first.frame.captured)
        assert first.latency < BUILD / 2
        assert pipeline.stats()["dropped_frames"]["stale"] == 1
    finally:
        source.kill()


def test_a_files_first_frame_read_while_the_engine_was_built_is_detected_at_once_not_skipped(
        run_pipeline, camera_thread, clip):
    """A file's frames wait for the pipeline (realtime = false: every one): the clip plays from its first frame,
    which was read before the engine was ready for the frame size, and is not late for that."""
    path, truth = clip
    camera = camera_thread(path, realtime=False)
    time.sleep(BUILD)
    results = []
    started = time.monotonic()
    pipeline, published, _ = run_pipeline(camera, [AnyFrame(), AnyFrame()], results=results)
    wait_for(lambda: len(results) == len(truth["frames"]), "every frame of the clip")
    assert [result.frame.index for result in results] == list(range(len(truth["frames"])))
    assert results[0].frame.captured >= started and results[0].latency < BUILD / 2
    assert pipeline.stats()["dropped_frames"]["stale"] == 0
