import json

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


def test_credentials_in_the_camera_url_appear_in_no_log_line_telemetry_or_reply(mosquitto, daemon_factory, clip):
    """A camera that takes its credentials in the query string (?user=admin&pwd=secret), streaming, then lost:
    not the log (the reconnect warnings), nor telemetry (camera.source, camera.error), detections, status,
    nor a STATUS reply shows them; the source is shown as ?user=***&pwd=***."""
    from conftest import run_cli
    camera = MjpegCamera(load_jpegs(clip[0])).start()
    shown = camera.url + "?user=***&pwd=***"
    recorder = Recorder(mosquitto.port, "facewatch/#")
    daemon = daemon_factory(mosquitto.port, {"source": camera.url + "?user=admin&pwd=secret", "stall_timeout": 1.0,
                                             "read_timeout": 1.0, "open_timeout": 1.0, "reconnect_min": 0.2,
                                             "reconnect_max": 1.0}, commands={"allow_unsigned": True})
    wait_until(lambda: len(recorder.on("detections")) >= 3, 60, message="detections from the camera")
    reply = run_cli("ctl", "--host", "127.0.0.1", "--port", mosquitto.port, "--json", "status", "testcam", timeout=60)
    assert reply.returncode == 0, reply.stdout + reply.stderr
    camera.kill()
    lost = wait_until(lambda: [t for t in recorder.json_on("telemetry") if t["camera"]["state"] == "reconnecting"
                               and t["camera"]["error"].startswith("cannot open camera source")], 30,
                      message="the failed reopen to be reported")[-1]
    wait_until(lambda: "cannot open camera source" in daemon.output(), 10, message="the reconnect warning")
    assert lost["camera"]["source"] == shown and shown in lost["camera"]["error"]
    assert json.loads(reply.stdout.splitlines()[-1])["status"]["camera"]["source"] == shown
    published = "\n".join(payload.decode("utf-8", "replace") for _, payload, _ in recorder.raw)
    assert shown in daemon.output() and shown in published
    for surface, text in (("log", daemon.output()), ("MQTT", published), ("ctl", reply.stdout + reply.stderr)):
        assert "secret" not in text and "admin" not in text, surface
