"""A thread that fails is never silent: the daemon stops with exit 1, says which thread and why, and
leaves `offline` retained, so systemd restarts it. A failing sensor is reported in telemetry instead."""
import pytest

from brokers import Recorder, wait_until
from figures import record

PREFIX = "facewatch/testcam"


@pytest.mark.parametrize("fault, thread, cause", [
    ("camera", "camera", "injected camera fault"),
    ("inference", "inference-1", "injected inference fault"),
    ("publish", "publish", "injected publish fault"),
])
def test_a_thread_that_raises_ends_the_daemon_with_exit_1_and_says_why(mosquitto, daemon_factory, clip,
                                                                     fault, thread, cause):
    recorder = Recorder(mosquitto.port, PREFIX + "/status")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, fault=fault)
    code = daemon.process.wait(timeout=60)
    output = daemon.output()
    wait_until(lambda: recorder.last("status") == "offline", 10, message="offline")
    late = Recorder(mosquitto.port, PREFIX + "/status")
    wait_until(lambda: late.on("status"), 5, message="the retained status")
    status, retained = late.on("status")[-1]
    record("{} thread raises".format(fault), exit_code=code,
           retained_status=status if retained else "{} (not retained)".format(status))
    assert code == 1, output
    assert "the {} thread died: RuntimeError: {}".format(thread, cause) in output
    assert "Traceback" in output  # the log keeps the traceback for the bug report
    assert (status, retained) == ("offline", True)


def test_failing_host_sensors_are_reported_in_telemetry_and_detection_goes_on(mosquitto, daemon_factory, clip):
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, fault="host")
    wait_until(lambda: len(recorder.json_on("telemetry")) >= 3, 60, message="three telemetry messages")
    host = recorder.json_on("telemetry")[-1]["host"]
    assert "injected sensor fault" in host["error"]
    assert recorder.on("detections") and daemon.process.poll() is None
    assert daemon.output().count("injected sensor fault") == 1  # logged once, reported every time
