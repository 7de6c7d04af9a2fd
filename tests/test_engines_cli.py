import json
import os

import pytest

from conftest import REPO_ROOT, run_cli


def test_build_then_reuse_then_list(tmp_path):
    cache = tmp_path / "engines"
    first = run_cli("engines", "build", "--cache-dir", cache)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("built ") and "engine at 640x480, requested auto" in first.stdout
    assert "ms per inference measured here; auto: fastest measured here at 640x480: " in first.stdout
    assert "acceptance" in first.stderr
    second = run_cli("engines", "build", "--cache-dir", cache)
    assert second.returncode == 0 and second.stdout.startswith("reused ")
    listing = json.loads(run_cli("engines", "list", "--json", "--cache-dir", cache).stdout)
    assert len(listing["engines"]) == 2 and listing["choice_reason"].startswith("auto: fastest measured here")
    served = min(listing["engines"], key=lambda entry: entry["latency_ms"])
    assert listing["active"] == served["name"]
    assert set(served["key_inputs"]) >= {"onnx_sha256", "calibration_sha256", "backend_version", "device",
                                         "compute_capability", "l4t_release", "precision", "input_shape", "builder"}
    text = run_cli("engines", "list", "--cache-dir", cache).stdout
    assert "ms per inference measured here" in text and "chosen: auto: fastest measured here" in text


def test_the_frame_size_shapes_the_engine(tmp_path):
    result = run_cli("engines", "build", "--precision", "fp32", "--frame-size", "1280x720", "--cache-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "FP32 engine at 640x384" in result.stdout
    entry = json.loads(run_cli("engines", "list", "--json", "--cache-dir", tmp_path).stdout)["engines"][0]
    assert entry["key_inputs"]["input_shape"] == [1, 3, 384, 640]


@pytest.mark.parametrize("size", ["1280", "0x720", "1280x", "ax720", "9000x9000"])
def test_a_bad_frame_size_is_a_usage_error(tmp_path, size):
    result = run_cli("engines", "build", "--frame-size", size, "--cache-dir", tmp_path)
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr


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
