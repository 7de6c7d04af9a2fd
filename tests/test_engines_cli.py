import json
import os
import random
import signal
import subprocess
import sys
import time

from appliance.engine.store import EngineRejected, EngineStore
import pytest

from conftest import REPO_ROOT, run_cli


CPU_PROFILES = {"avx2": "FP32", "vnni": "INT8"}


@pytest.mark.parametrize("profile", sorted(CPU_PROFILES))
def test_build_then_reuse_then_list(tmp_path, profile):
    cache = tmp_path / "engines"
    cpu = {"FACEWATCH_CPUINFO": os.path.join(REPO_ROOT, "tests", "data", "cpuinfo-{}.txt".format(profile))}
    first = run_cli("engines", "build", "--cache-dir", cache, env=cpu)
    assert first.returncode == 0, first.stderr
    expected = CPU_PROFILES[profile]
    assert first.stdout.startswith("built ") and "{} engine, requested auto".format(expected) in first.stdout
    assert "acceptance" in first.stderr
    second = run_cli("engines", "build", "--cache-dir", cache, env=cpu)
    assert second.returncode == 0 and second.stdout.startswith("reused ")
    listing = json.loads(run_cli("engines", "list", "--json", "--cache-dir", cache, env=cpu).stdout)
    assert len(listing["engines"]) == 1 and listing["active"] == listing["engines"][0]["name"]
    entry = listing["engines"][0]
    assert set(entry["key_inputs"]) >= {"onnx_sha256", "calibration_sha256", "backend_version", "device",
                                        "compute_capability", "l4t_release", "precision", "input_shape", "builder"}


def test_an_unmet_precision_is_reported_never_silent(tmp_path):
    result = run_cli("engines", "build", "--precision", "fp16", "--cache-dir", tmp_path)
    assert result.returncode == 0
    assert "fallback: FP16 requested but this platform has no fast FP16" in result.stdout


def test_strict_refuses_an_unmet_precision_with_exit_2(tmp_path):
    result = run_cli("engines", "build", "--precision", "fp16", "--strict", "--cache-dir", tmp_path)
    assert result.returncode == 2
    assert "FP16 was requested but this platform has no fast FP16" in result.stderr


def test_a_failed_build_exits_1(tmp_path):
    result = run_cli("engines", "build", "--cache-dir", tmp_path, env={"FACEWATCH_BUILD_FAULT": "sigkill"})
    assert result.returncode == 1
    assert "no engine could be built" in result.stderr and "SIGKILL" in result.stderr


def test_twenty_builds_killed_at_random_moments_never_leave_a_loadable_partial_engine(tmp_path, model):
    cache = str(tmp_path / "engines")
    started = time.monotonic()
    assert run_cli("engines", "build", "--cache-dir", tmp_path / "timing").returncode == 0
    duration = time.monotonic() - started
    randomness = random.Random(20)
    outcomes = []
    for _ in range(20):
        build = subprocess.Popen([sys.executable, "-m", "appliance", "engines", "build", "--force", "--cache-dir", cache],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(randomness.uniform(0.0, duration))
        os.killpg(build.pid, signal.SIGKILL)
        outcomes.append(build.wait())
        store = EngineStore(cache)
        for entry in store.entries():
            inputs = entry["key_inputs"]
            try:
                store.verified(entry["name"], inputs)  # what a loader accepts must be whole
            except EngineRejected as exc:
                assert "sidecar" in str(exc) or "no engine" in str(exc), exc
    assert outcomes.count(-signal.SIGKILL) >= 10, outcomes
    final = run_cli("engines", "build", "--cache-dir", cache)
    assert final.returncode == 0, final.stderr
    assert not [n for n in os.listdir(cache) if ".tmp-" in n]
