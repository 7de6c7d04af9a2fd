from brokers import Recorder, wait_until
from mjpeg_server import MjpegCamera, load_jpegs

PREFIX = "facewatch/testcam"


def test_an_http_mjpeg_camera_that_dies_and_comes_back_is_reconnected(mosquitto, daemon_factory, clip):
    camera = MjpegCamera(load_jpegs(clip[0])).start()
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": camera.url, "stall_timeout": 1.0, "read_timeout": 1.0,
                                             "open_timeout": 1.0, "reconnect_min": 0.2, "reconnect_max": 1.0})
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections from the camera")
    camera.kill()
    killed_at = len(recorder.on("telemetry"))
    wait_until(lambda: any(t["camera"]["state"] in ("stalled", "reconnecting")
                           for t in recorder.json_on("telemetry")[killed_at:]),
               30, message="the camera loss to be reported")
    lost_at = len(recorder.on("detections"))
    MjpegCamera(camera.jpegs, port=camera.port).start()
    wait_until(lambda: len(recorder.on("detections")) >= lost_at + 5, 60, message="detections after the camera came back")
    report = wait_until(lambda: [t for t in recorder.json_on("telemetry") if t["camera"]["state"] == "streaming"
                                 and t["camera"]["reconnects"] >= 1], 10, message="a counted reconnect")[-1]
    assert report["camera"]["source"] == camera.url
    assert daemon.process.poll() is None
    assert any(m["faces"] for m in recorder.json_on("detections")[lost_at:])
