"""A full disk, for real: a small tmpfs mounted in a private mount namespace (`unshare`), filled up.

The build says "no space left on device"; a valid engine already in the cache still serves (READY) even
though facewatch cannot write its active record there.
"""
import os
import shlex
import subprocess
import sys

import pytest

from brokers import Recorder, wait_until
from conftest import run_cli
from figures import record
from notify_socket import NotifySocket
from private_mounts import namespaces_refused


REFUSED = namespaces_refused()
pytestmark = pytest.mark.skipif(bool(REFUSED), reason=REFUSED or "-")


def on_full_disk(mountpoint, prepare, facewatch_args, **popen):
    """Mount a 16 MiB tmpfs on `mountpoint` privately, run `prepare` (shell), fill what is left, then
    exec `facewatch ARGS` there; returns the Popen."""
    facewatch = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "appliance"] + [str(a) for a in facewatch_args])
    script = ("set -e; mount -t tmpfs -o size=16m tmpfs {m}; {prepare}; "
              "dd if=/dev/zero of={m}/filler bs=64k 2>/dev/null || true; exec {facewatch}").format(
        m=shlex.quote(str(mountpoint)), prepare=prepare or "true", facewatch=facewatch)
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], **popen)


def test_a_build_on_a_full_disk_says_no_space_left_on_device(tmp_path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    build = on_full_disk(mountpoint, "mkdir {}/engines".format(mountpoint),
                         ["engines", "build", "--precision", "fp32", "--cache-dir", mountpoint / "engines"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = build.communicate(timeout=120)
    said = [line for line in err.splitlines() if "no space left on device" in line]
    record("disk full during a build", exit_code=build.returncode,
           message=said[-1][said[-1].index("no space left on device"):] if said else "(not said) " + err[-200:])
    assert build.returncode == 1, err
    assert said and str(mountpoint / "engines") in err
    assert "Traceback" not in err and "Protobuf" not in err


def test_a_valid_cached_engine_still_serves_on_a_full_disk(tmp_path, mosquitto, clip):
    prebuilt = tmp_path / "prebuilt"
    assert run_cli("engines", "build", "--precision", "fp32", "--cache-dir", prebuilt).returncode == 0
    os.unlink(str(prebuilt / "active.json"))
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    config = tmp_path / "facewatch.toml"
    config.write_text(
        '[camera]\nsource = "{}"\nloop = true\n[mqtt]\nhost = "127.0.0.1"\nport = {}\ndevice_id = "fullcam"\n'
        '[engine]\nbackend = "onnxruntime"\nprecision = "fp32"\ncache_dir = "{}"\n'.format(
            clip[0], mosquitto.port, mountpoint / "engines"))
    notify = NotifySocket()
    recorder = Recorder(mosquitto.port, "facewatch/fullcam/#")
    daemon = on_full_disk(mountpoint, "cp -a {} {}/engines".format(prebuilt, mountpoint), ["run", "--config", config],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=dict(os.environ, **notify.environment()))
    try:
        notify.wait_for(lambda messages: "READY=1" in messages, 60, "READY=1 on a full disk")
        wait_until(lambda: recorder.on("detections"), 30, message="detections from the cached engine")
        engine_state = recorder.json_on("engine")[-1]["state"]
        detections = len(recorder.on("detections"))
    finally:
        daemon.terminate()
        output = daemon.communicate(timeout=30)[0]
        notify.close()
        recorder.close()
    record("disk full with a valid cached engine", ready=engine_state == "ready", detections=detections)
    assert engine_state == "ready" and detections > 0
    assert daemon.returncode == 0, output
    assert "cannot record" in output and "no space left on device" in output
