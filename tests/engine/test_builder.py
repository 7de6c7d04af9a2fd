"""The build child: its timeout, its cancellation, and what it leaves behind (nothing)."""
import glob
import os
import tempfile
import threading
import time
import uuid

import pytest

from appliance.engine.builder import BuildCrashed, BuildFailed, run_build
from appliance.errors import Cancelled
from conftest import build_fault_env, set_build_fault


def job_for(model, output):
    return {"backend": "onnxruntime", "onnx": model.onnx_path, "int8_source": None, "int8_onnx": None,
            "precision": "fp32", "output": output, "workspace_mb": 64, "fast_fp16": False,
            "input_name": model.input_name, "input_shape": [1, 3, model.input_height, model.input_width],
            "timing_cache": ""}


@pytest.fixture(autouse=True)
def tagged(monkeypatch):
    """Children of this test carry a tag in their environment, so other suites' builds are not counted."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv("FACEWATCH_TEST_TAG", tag)
    TAG[0] = tag


TAG = [""]


def worker_processes():
    """PIDs of this test's build children still running."""
    found = []
    marker = "FACEWATCH_TEST_TAG={}".format(TAG[0]).encode()
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as f:
                if marker in f.read().split(b"\0"):
                    with open(environ[:-len("environ")] + "cmdline", "rb") as f:
                        if b"appliance.engine.build_child" in f.read():
                            found.append(int(environ.split("/")[2]))
        except OSError:
            pass
    return found


def test_a_build_reports_its_phases_and_leaves_no_job_file(model, tmp_path):
    before = set(os.listdir(tempfile.gettempdir()))
    phases = []
    seconds = run_build(job_for(model, str(tmp_path / "e.engine")), lambda phase, fraction, eta: phases.append(phase))
    assert seconds > 0 and os.path.getsize(str(tmp_path / "e.engine")) > 0
    assert phases[0] == "load" and "write" in phases
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("facewatch-build")]


def test_a_silent_build_is_ended_by_its_timeout(model, tmp_path, monkeypatch):
    set_build_fault(monkeypatch, "hang")
    beats = []
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="ran past its 3 s limit"):
        run_build(job_for(model, str(tmp_path / "e.engine")), lambda *a: None, timeout=3.0,
                  heartbeat=lambda elapsed, cpu: beats.append(elapsed))
    assert time.monotonic() - started < 15
    assert len(beats) >= 2 and beats == sorted(beats)
    assert not worker_processes()


def test_a_cancelled_build_stops_at_once(model, tmp_path, monkeypatch):
    set_build_fault(monkeypatch, "hang")
    cancel = threading.Event()
    phases = []

    def progress(phase, fraction, eta):
        phases.append(phase)
        cancel.set()
    with pytest.raises(Cancelled):
        run_build(job_for(model, str(tmp_path / "e.engine")), progress, cancel=cancel)
    assert phases and not worker_processes()


def test_a_killed_child_is_a_crash_worth_a_retry(model, tmp_path, monkeypatch):
    set_build_fault(monkeypatch, "sigkill")
    with pytest.raises(BuildCrashed, match="killed by SIGKILL"):
        run_build(job_for(model, str(tmp_path / "e.engine")), lambda *a: None)


def test_a_build_child_dies_with_its_parent(model, tmp_path):
    """SIGKILL the process that runs a build: its child does not build on as an orphan."""
    import signal
    import subprocess
    import sys
    from brokers import wait_until
    code = ("import json, sys, threading\n"
            "from appliance.engine.builder import run_build\n"
            "job = json.loads(sys.argv[1])\n"
            "run_build(job, lambda p, f, e: print('phase', p, flush=True))\n")
    env = dict(os.environ, **build_fault_env("hang"))
    parent = subprocess.Popen([sys.executable, "-c", code, __import__("json").dumps(job_for(model, str(tmp_path / "e")))],
                              stdout=subprocess.PIPE, universal_newlines=True, env=env)
    assert parent.stdout.readline().startswith("phase")
    assert worker_processes()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_until(lambda: not worker_processes(), 10, message="the orphaned build child to die")


def test_a_silent_build_that_works_keeps_its_heartbeat_and_finishes(model, tmp_path, monkeypatch):
    """As TensorRT before 10.x: nothing reported for seconds, CPU time used: the heartbeat goes on."""
    set_build_fault(monkeypatch, "silent:3")
    beats = []
    run_build(job_for(model, str(tmp_path / "e.engine")), lambda *a: None, stall_timeout=2.0,
              heartbeat=lambda elapsed, cpu: beats.append((elapsed, cpu)))
    assert len(beats) >= 2 and beats[-1][1] > beats[0][1] >= 0


def test_a_build_with_no_output_and_no_cpu_time_is_stopped_as_hung(model, tmp_path, monkeypatch):
    set_build_fault(monkeypatch, "hang")
    with pytest.raises(BuildFailed, match="made no progress for [0-9]+ s .no output, no CPU time used"):
        run_build(job_for(model, str(tmp_path / "e.engine")), lambda *a: None, stall_timeout=2.0)
    assert not worker_processes()


def test_the_shipped_build_child_has_no_fault_hook(model, tmp_path, monkeypatch):
    """FACEWATCH_BUILD_FAULT means something only with tests/build_faults on the child's PYTHONPATH."""
    monkeypatch.setenv("FACEWATCH_BUILD_FAULT", "sigkill")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert run_build(job_for(model, str(tmp_path / "e.engine")), lambda *a: None) > 0
