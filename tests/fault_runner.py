"""`python tests/fault_runner.py FAULT facewatch-args...`: facewatch with one injected fault, for tests.

Faults: camera (the camera thread raises), inference (the first inference thread raises on its first
real frame), publish (the publish thread raises), host (host sensors fail on every reading), stall (the
first inference thread blocks forever on its first real frame, while a second one could go on). Two more
leave the daemon working, for the soak (tests/soak.py): leak or leak:BYTES (every published frame leaves
LEAK_BYTES, or BYTES, behind: a copy of its first bytes kept forever, as a cache of crops never evicted
would), and backlog (once, BACKLOG_AFTER_S after its first frame, the publish thread waits until the ordered
hand-over overflows: the backlog a loaded host makes, all at once; glibc keeps the memory of the frames
queued, a one-time step of RSS).
"""
import sys
import threading
import time

LEAK_BYTES = 64 * 1024  # per processed frame: a realistic leak (a crop), about 2-8 MB/s at 30-120 frames/s
BACKLOG_AFTER_S = 12.0


def inject(fault):
    from appliance.daemon import app
    from appliance.camera import capture as camera
    from appliance.engine import detector
    fault, _, argument = fault.partition(":")
    if fault == "camera":
        def broken_stream(self, capture):
            raise RuntimeError("injected camera fault")
        camera.Camera._stream = broken_stream
    elif fault in ("inference", "stall"):
        real_infer = detector.Detector.infer

        def failing_infer(self, tensor):
            if threading.current_thread().name != "inference-1":
                return real_infer(self, tensor)
            if fault == "stall":
                threading.Event().wait()
            raise RuntimeError("injected inference fault")
        detector.Detector.infer = failing_infer
    elif fault == "publish":
        def failing_publish(self, result):
            raise RuntimeError("injected publish fault")
        app.App._publish_result = failing_publish
    elif fault == "leak":
        real_publish = app.App._publish_result
        leak_bytes = int(argument or LEAK_BYTES)
        kept = []

        def leaking_publish(self, result):
            flat = result.frame.image.reshape(-1)
            kept.append(flat[:leak_bytes // flat.itemsize].copy())   # a copy: the frame itself is freed
            return real_publish(self, result)
        app.App._publish_result = leaking_publish
    elif fault == "backlog":
        real_publish = app.App._publish_result
        started = []

        def backlogged_publish(self, result):
            if not started:
                started.append(time.monotonic())
            elif len(started) == 1 and time.monotonic() - started[0] >= BACKLOG_AFTER_S:
                started.append(time.monotonic())
                while self.pipeline.queue_dropped == 0 and time.monotonic() - started[1] < 10.0:
                    time.sleep(0.01)  # polling the overflow count, which has no event to wait on
            return real_publish(self, result)
        app.App._publish_result = backlogged_publish
    elif fault == "host":
        real_open = app.open_host_sensors

        def failing_sensors(*args, **kwargs):
            host = real_open(*args, **kwargs)

            def sample():
                raise OSError("injected sensor fault")
            host.sample = sample
            return host
        app.open_host_sensors = failing_sensors
    else:
        raise SystemExit("unknown fault {!r}".format(fault))


if __name__ == "__main__":
    inject(sys.argv[1])
    from appliance.commands.cli import main
    sys.exit(main(sys.argv[2:]))
