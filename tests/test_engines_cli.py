import json
import os

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
