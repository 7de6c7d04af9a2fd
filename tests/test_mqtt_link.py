import shutil
import subprocess
import time

import pytest

from brokers import Mosquitto, wait_until
from appliance.mqtt.topics import Topics


def test_command_topics_of_this_device_and_of_all(tmp_path):
    topics = Topics("facewatch", "cam1")
    assert topics.command_name("facewatch/cam1/cmd/rebuild") == "rebuild"
    assert topics.command_name("facewatch/all/cmd/status") == "status"
    assert topics.command_name("facewatch/cam2/cmd/status") is None
    assert topics.command_name("facewatch/cam1/cmd/a/b") is None


@pytest.fixture
def locked_broker(tmp_path):
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    password_file = tmp_path / "passwords"
    subprocess.check_call([passwd, "-c", "-b", str(password_file), "camera", "right-password"])
    password_file.chmod(0o644)
    # `user root`: a root mosquitto otherwise drops to user mosquitto, which cannot read pytest's tmp dirs
    broker = Mosquitto(tmp_path, "allow_anonymous false\npassword_file {}\nuser root\n".format(password_file))
    broker.start()
    yield broker
    broker.stop()


def test_bad_credentials_stop_the_retries_and_say_so(tmp_path, locked_broker, daemon_factory, clip):
    (tmp_path / "wrong").write_text("wrong-password\n")
    daemon = daemon_factory(locked_broker.port, {"source": clip[0], "loop": True},
                            mqtt={"username": "camera", "password_file": str(tmp_path / "wrong")})
    wait_until(lambda: "rejected the credentials" in daemon.output(), 30, message="the credentials error")
    time.sleep(3.0)
    assert daemon.output().count("rejected the credentials") == 1
    assert "not retrying" in daemon.output()
    assert daemon.process.poll() is None


def test_good_credentials_connect(tmp_path, locked_broker, daemon_factory, clip):
    (tmp_path / "right").write_text("right-password\n")
    daemon_factory(locked_broker.port, {"source": clip[0], "loop": True},
                   mqtt={"username": "camera", "password_file": str(tmp_path / "right")})
    import paho.mqtt.client as paho
    kwargs = {"callback_api_version": paho.CallbackAPIVersion.VERSION2} if hasattr(paho, "CallbackAPIVersion") else {}
    client = paho.Client(**kwargs)
    client.username_pw_set("camera", "right-password")
    seen = []
    client.on_message = lambda c, u, m: seen.append(m.payload)
    client.on_connect = lambda c, *a: c.subscribe("facewatch/testcam/status", 1)
    client.connect("127.0.0.1", locked_broker.port)
    client.loop_start()
    try:
        wait_until(lambda: b"online" in seen, 30, message="online")
    finally:
        client.loop_stop()
