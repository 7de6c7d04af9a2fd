"""`systemctl start facewatch` under a real systemd 252, installed by scripts/install.sh, observed as an owner
would: systemctl, the journal, and the messages on a real mosquitto outside the box."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from brokers import Mosquitto, Recorder, wait_until
from conftest import REPO_ROOT, build_fault_env
from figures import record
from systemd_box import SOURCE_IN_BOX, SystemdBox, refusal

REFUSED = refusal()
pytestmark = [pytest.mark.skipif(bool(REFUSED), reason=REFUSED or "-"), pytest.mark.slow, pytest.mark.box,
              pytest.mark.xdist_group("systemd")]
PREFIX = "facewatch/boxcam"
DROPIN = "/etc/systemd/system/facewatch.service.d/test.conf"
CONFIG = """[camera]
source = "{src}/examples/demo/clip.avi"
loop = true
[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "boxcam"
reconnect_min = 0.5
reconnect_max = 2.0
{mqtt_extra}
[telemetry]
interval = 1.0
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    instance = Mosquitto(tmp_path_factory.mktemp("box-broker")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A booted systemd with facewatch installed by scripts/install.sh (from a wheel of this tree)."""
    wheels = tempfile.mkdtemp(prefix="facewatch-box-", dir="/var/tmp")  # /tmp is the box's own
    # Built from a copy: the checkout's own build/ folder (left by other builds) cannot trip this one.
    source = os.path.join(wheels, "source")
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".cache", ".whl", ".pytest_cache"))
    subprocess.check_call([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source])
    instance = SystemdBox(REPO_ROOT, tmp_path_factory.mktemp("box") / "boot.log").boot()
    try:
        started = time.monotonic()
        instance.wheel = glob.glob(os.path.join(wheels, "*.whl"))[0]
        install = instance.run(SOURCE_IN_BOX + "/scripts/install.sh", "--python", "/usr/bin/python3", "--package",
                               instance.wheel, "--no-start", timeout=900)
        assert install.returncode == 0, install.stdout[-3000:]
        instance.install_seconds = time.monotonic() - started
        yield instance
    finally:
        instance.stop()
        subprocess.call(["rm", "-rf", wheels])


def configure(box, broker, mqtt_extra="", dropin=""):
    """The service stopped, the configuration and a test drop-in written, systemd told."""
    box.run("systemctl", "stop", "facewatch")
    box.run("systemctl", "reset-failed", "facewatch")
    box.write("/etc/facewatch/facewatch.toml", CONFIG.format(src=SOURCE_IN_BOX, port=broker.port,
                                                              mqtt_extra=mqtt_extra), mode="0640")
    box.run("chgrp", "facewatch", "/etc/facewatch/facewatch.toml", check=True)
    if dropin:
        box.write(DROPIN, "[Service]\n" + dropin)
    else:
        box.run("rm", "-f", DROPIN)
    box.run("systemctl", "daemon-reload", check=True)


def journal(box):
    return box.run("journalctl", "-u", "facewatch", "--no-pager", "-o", "cat").stdout


def test_install_is_idempotent_and_never_overwrites_a_configuration(box):
    box.write("/etc/facewatch/facewatch.toml", "# mine\n", mode="0640")
    again = box.run(SOURCE_IN_BOX + "/scripts/install.sh", "--python", "/usr/bin/python3", "--package", box.wheel,
                    "--no-start", timeout=600)
    kept = box.run("cat", "/etc/facewatch/facewatch.toml").stdout == "# mine\n"
    record("install.sh in a systemd box", install_seconds=round(box.install_seconds, 1),
           second_run_exit=again.returncode, configuration_kept=kept)
    assert again.returncode == 0, again.stdout[-2000:]
    assert "keeping the existing /etc/facewatch/facewatch.toml" in again.stdout
    assert kept
    assert box.show("facewatch", "UnitFileState")["UnitFileState"] == "enabled"


def test_start_returns_only_once_ready_and_status_tells_the_phase(box, broker):
    configure(box, broker)
    recorder = Recorder(broker.port, PREFIX + "/#")
    started = box.run("systemctl", "start", "facewatch", timeout=300)
    assert started.returncode == 0, started.stdout + journal(box)[-3000:]
    assert box.show("facewatch", "ActiveState")["ActiveState"] == "active"
    wait_until(lambda: recorder.json_on("engine"), 10, message="the engine state")
    assert recorder.json_on("engine")[-1]["state"] == "ready"   # READY=1 came after the engine was ready
    status = box.run("systemctl", "status", "facewatch", "--no-pager").stdout
    assert 'Status: "detecting on {}/examples/demo/clip.avi"'.format(SOURCE_IN_BOX) in status, status
    wait_until(lambda: recorder.on("detections"), 30, message="detections from the service")
    assert "appliance.daemon.app: detecting: camera" in journal(box)
    assert box.show("facewatch", "User")["User"] == "facewatch"
    doctor = box.run("/opt/facewatch/venv/bin/facewatch", "doctor", "--config", "/etc/facewatch/facewatch.toml")
    assert "ok    systemd       facewatch.service active, enabled" in doctor.stdout, doctor.stdout
    assert doctor.returncode == 0, doctor.stdout
    recorder.close()


def test_a_killed_daemon_is_restarted_offline_then_online(box, broker):
    configure(box, broker)
    assert box.run("systemctl", "start", "facewatch", timeout=300).returncode == 0
    recorder = Recorder(broker.port, PREFIX + "/status")
    wait_until(lambda: recorder.last("status") == "online", 30, message="online")
    restarts = int(box.show("facewatch", "NRestarts")["NRestarts"])
    # SIGKILL to the daemon itself (`systemctl kill` also signals the unit's other processes, and systemd in
    # the overlay box sometimes fails that part with EIO)
    box.run("kill", "-KILL", box.show("facewatch", "MainPID")["MainPID"], check=True)
    wait_until(lambda: recorder.last("status") == "offline", 10, message="offline (the will)")
    wait_until(lambda: recorder.last("status") == "online", 60, message="online again after the restart")
    assert int(box.show("facewatch", "NRestarts")["NRestarts"]) == restarts + 1
    recorder.close()


def test_a_stalled_inference_is_restarted_by_the_watchdog(box, broker):
    runner = "{}/tests/fault_runner.py".format(SOURCE_IN_BOX)
    configure(box, broker, dropin="WatchdogSec=3\nExecStart=\nExecStart=/opt/facewatch/venv/bin/python {} stall run "
              "--config /etc/facewatch/facewatch.toml\n".format(runner))
    assert box.run("systemctl", "start", "facewatch", timeout=300).returncode == 0
    before = int(box.show("facewatch", "NRestarts")["NRestarts"])
    wait_until(lambda: box.show("facewatch", "Result")["Result"] == "watchdog", 60, message="the watchdog's verdict")
    wait_until(lambda: int(box.show("facewatch", "NRestarts")["NRestarts"]) > before, 60,
               message="a restart by the watchdog")


def test_a_bad_configuration_fails_with_exit_2_and_is_not_restarted(box, broker):
    configure(box, broker, mqtt_extra='keepalive = "often"')
    box.run("systemctl", "start", "facewatch", timeout=120)
    shown = wait_until(lambda: (lambda s: s if s["ActiveState"] == "failed" else None)(
        box.show("facewatch", "ActiveState", "ExecMainStatus", "NRestarts")), 30, message="the unit to fail")
    assert shown["ExecMainStatus"] == "2" and shown["NRestarts"] == "0"
    assert "mqtt.keepalive: must be an integer" in journal(box)
    # RestartSec is 5 s: over that and more, no restart came.
    time.sleep(7)
    assert box.show("facewatch", "NRestarts", "ActiveState") == {"NRestarts": "0", "ActiveState": "failed"}


def test_a_first_boot_build_silent_for_longer_than_the_start_timeout_reaches_ready(box, broker):
    configure(box, broker, dropin="TimeoutStartSec=5\n" + "".join(
        "Environment={}={}\n".format(*item) for item in sorted(build_fault_env("silent:12", SOURCE_IN_BOX).items())))
    box.run("rm", "-rf", "/var/lib/facewatch/engines", check=True)
    started = time.monotonic()
    result = box.run("systemctl", "start", "facewatch", timeout=300)
    waited = time.monotonic() - started
    state = box.show("facewatch", "ActiveState")["ActiveState"]
    record("first boot: a build silent for 12 s, TimeoutStartSec=5", start_exit=result.returncode,
           active_state=state, start_seconds=round(waited, 1))
    assert result.returncode == 0, result.stdout + journal(box)[-3000:]
    assert state == "active" and waited > 12


def test_a_present_secret_becomes_a_credential_without_breaking_the_start_and_password_file_works(box, tmp_path):
    """systemd 247+ gets LoadCredential= for the secret files that exist (a missing one would be status
    243); the daemon authenticates with mqtt.password_file (0640 root:facewatch), the way that works on
    every systemd, JetPack 4.6's 237 included. (This box's systemd leaves a credentials directory
    root-only for a non-root service, even for a bare unit, so credential delivery is not tested here.)"""
    passwd = "/usr/bin/mosquitto_passwd"
    passwords = tmp_path / "passwords"
    subprocess.check_call([passwd, "-c", "-b", str(passwords), "boxcam", "s3cret"])
    passwords.chmod(0o644)
    locked = Mosquitto(tmp_path, "allow_anonymous false\npassword_file {}\n".format(passwords)).start()
    try:
        box.write("/etc/facewatch/mqtt_password", "s3cret\n", mode="0640")
        box.run("chgrp", "facewatch", "/etc/facewatch/mqtt_password", check=True)
        install = box.run(SOURCE_IN_BOX + "/scripts/install.sh", "--python", "/usr/bin/python3", "--package",
                          box.wheel, "--no-start", timeout=600)
        assert install.returncode == 0, install.stdout[-2000:]
        assert "LoadCredential=mqtt_password:/etc/facewatch/mqtt_password" in box.run(
            "systemctl", "cat", "facewatch").stdout
        configure(box, locked, mqtt_extra='username = "boxcam"\npassword_file = "/etc/facewatch/mqtt_password"')
        recorder = Recorder(locked.port, PREFIX + "/status", credentials=("boxcam", "s3cret"))
        assert box.run("systemctl", "start", "facewatch", timeout=300).returncode == 0
        try:
            wait_until(lambda: recorder.last("status") == "online", 30, message="online with the password")
        except AssertionError:
            raise AssertionError(journal(box)[-3000:] + locked.log()[-1500:])
        recorder.close()
    finally:
        box.run("systemctl", "stop", "facewatch")
        box.run("rm", "-f", "/etc/facewatch/mqtt_password", "/etc/systemd/system/facewatch.service.d/credentials.conf")
        box.run("systemctl", "daemon-reload")
        locked.stop()
