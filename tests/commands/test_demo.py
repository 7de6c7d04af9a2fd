import os
import re
import signal
import subprocess
import sys
import time

import cv2
import pytest

from brokers import leftovers, refuses, wait_until
from conftest import REPO_ROOT, run_cli

BROKER_LINE = r"facewatch demo: broker {} (\S+) on 127\.0\.0\.1:(\d+) \(private, stopped at the end\)\n"






def assert_a_full_run(result, out):
    assert result.returncode == 0, result.stderr
    assert "[status]     online" in result.stdout
    ready = re.search(r"\[engine\]     ready backend=onnxruntime precision=(fp32|int8) input=640x480 "
                      r"latency=([0-9.]+) ms\n +auto: fastest measured here at 640x480: (.*)", result.stdout)
    assert ready, result.stdout
    fastest = ready.group(3).split(",")[0]
    assert fastest == "{} {} ms".format(ready.group(1).upper(), ready.group(2))
    assert "[detections] frame" in result.stdout and "[telemetry]" in result.stdout
    assert "a message facewatch did not write" not in result.stdout
    assert "80 frames processed" in result.stdout
    received = re.search(r"messages received \(.*\b80 detections\b", result.stdout)
    assert received, result.stdout
    assert "recall 1.000, precision 1.000" in result.stdout
    wrote = re.search(r"facewatch demo: wrote (.+) \(the frame with the most faces, annotated: (\d+) faces, "
                      r"frame \d+\)", result.stdout)
    assert wrote and wrote.group(1) == str(out), result.stdout
    assert int(wrote.group(2)) == most_faces_in_the_clip()
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (480, 640, 3)


def most_faces_in_the_clip():
    import json
    with open(os.path.join(REPO_ROOT, "examples", "demo", "clip.json")) as f:
        return max(len(frame["faces"]) for frame in json.load(f)["frames"])


def run_demo_without_mosquitto(tmp_path, *args, **kwargs):
    """`facewatch demo ARGS` on a host without mosquitto: nothing on PATH, none where Debian puts it;
    with amqtt=False, amqtt not importable either."""
    code = ("import sys\nfrom appliance.commands import cli, demo_broker\ndemo_broker.MOSQUITTO_FALLBACKS = ()\n"
            "{}sys.exit(cli.main(sys.argv[1:]))\n").format(
                "" if kwargs.get("amqtt", True) else "sys.modules['amqtt'] = None\n")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))
    return subprocess.run([sys.executable, "-c", code, "demo"] + [str(a) for a in args], cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


def test_demo_runs_the_daemon_on_the_bundled_clip_with_a_private_mosquitto(tmp_path):
    out = tmp_path / "demo.jpg"
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = run_cli("demo", "--out", out, "--cache-dir", tmp_path / "engines", cwd=str(tmp_path), timeout=120,
                     env={"TMPDIR": str(temp)})
    assert_a_full_run(result, out)
    broker = re.search(BROKER_LINE.format("mosquitto"), result.stdout)
    assert broker, result.stdout
    assert re.match(r"\d+\.\d+", broker.group(1)), result.stdout
    assert refuses(int(broker.group(2))), "the private mosquitto still listens after the demo"
    assert not leftovers(temp)  # its config and log folder is gone


def test_demo_runs_on_amqtt_when_mosquitto_is_not_installed(tmp_path):
    from appliance.commands import demo_broker
    problem = demo_broker.amqtt_problem()
    if problem:
        pytest.skip("{}: pip install 'facewatch[demo]'".format(problem))
    out = tmp_path / "demo.jpg"
    result = run_demo_without_mosquitto(tmp_path, "--out", out, "--cache-dir", tmp_path / "engines")
    assert_a_full_run(result, out)
    broker = re.search(BROKER_LINE.format("amqtt"), result.stdout)
    assert broker, result.stdout
    assert refuses(int(broker.group(2)))
    assert "Traceback" not in result.stderr and "WARNING amqtt" not in result.stderr


def test_demo_without_any_broker_says_what_to_install(tmp_path):
    out = tmp_path / "demo.jpg"
    result = run_demo_without_mosquitto(tmp_path, "--out", out, "--cache-dir", tmp_path / "engines", amqtt=False)
    assert result.returncode == 1, result.stderr
    assert "facewatch demo: no MQTT broker to run the demo on: no mosquitto on PATH" in result.stderr
    assert "amqtt is not installed" in result.stderr
    assert "sudo apt-get install mosquitto" in result.stderr
    assert "pip install 'facewatch[demo]'" in result.stderr
    assert "facewatch demo --broker HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert "frames processed" not in result.stdout and not out.exists()


def start_looping_demo(tmp_path):
    """`facewatch demo --loop`, once its detections flow: (process, private broker's port, TMPDIR)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "appliance", "demo", "--loop", "--out", str(tmp_path / "d.jpg"),
                                "--cache-dir", str(tmp_path / "engines")], cwd=str(tmp_path), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    port = None
    for line in process.stdout:
        found = re.match(BROKER_LINE.format("mosquitto"), line)
        port = int(found.group(2)) if found else port
        if "[detections]" in line:
            break
    assert port and process.poll() is None
    return process, port, temp


def test_ctrl_c_stops_the_demo_and_its_broker(tmp_path):
    process, port, temp = start_looping_demo(tmp_path)
    try:
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[0]
    finally:
        process.kill()
    assert process.returncode == 0
    assert "facewatch demo: wrote" in rest
    assert refuses(port) and not leftovers(temp)


def test_a_killed_demo_leaves_no_broker_running(tmp_path):
    process, port, _ = start_looping_demo(tmp_path)
    process.kill()
    process.wait()
    process.stdout.close()
    wait_until(lambda: refuses(port), 10, message="the orphaned mosquitto to end")


def test_demo_on_the_users_broker_removes_the_retained_messages_it_left_and_says_so(tmp_path, mosquitto):
    from brokers import Recorder
    during = Recorder(mosquitto.port, "facewatch/demo/#")
    wait_until(during.subscribed.is_set, 10, message="the subscription")
    out = tmp_path / "d.jpg"
    result = run_cli("demo", "--broker", "127.0.0.1:{}".format(mosquitto.port), "--out", out,
                     "--cache-dir", tmp_path / "engines", cwd=str(tmp_path), timeout=300)
    during.close()
    assert result.returncode == 0, result.stderr
    assert_a_full_run(result, out)
    left = ["facewatch/demo/{}".format(name) for name in ("status", "engine", "snapshot", "instance")]
    assert all(during.raw_on(topic) for topic in left), [t for t in left if not during.raw_on(t)]
    assert "facewatch demo: removed the retained messages it left on 127.0.0.1:{} ({})".format(
        mosquitto.port, ", ".join(left)) in result.stdout
    late = Recorder(mosquitto.port, "facewatch/demo/#")
    try:
        wait_until(late.subscribed.is_set, 10, message="the late subscription")
        time.sleep(1.0)   # retained messages come right after the subscription is granted
        assert [(topic, len(payload)) for topic, payload, retained in late.raw if retained and payload] == []
    finally:
        late.close()
