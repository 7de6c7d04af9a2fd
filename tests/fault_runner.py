"""`python tests/fault_runner.py FAULT facewatch-args...`: facewatch with one injected fault, for tests.

Faults: camera (the camera thread raises), inference (the first inference thread raises on its first
real frame), publish (the publish thread raises), host (host sensors fail on every reading), stall (the
first inference thread blocks forever on its first real frame, while a second one could go on).
"""
import sys
import threading


def inject(fault):
    from appliance import app, camera, detector
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
    from appliance.cli import main
    sys.exit(main(sys.argv[2:]))
