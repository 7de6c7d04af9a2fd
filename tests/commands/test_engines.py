import json
import os

import pytest

from conftest import REPO_ROOT, build_fault_env, run_cli


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
    assert "ms per inference measured here" in text and "in use since the last request: auto: fastest measured" in text


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
    result = run_cli("engines", "build", "--cache-dir", tmp_path, env=build_fault_env("sigkill"))
    assert result.returncode == 1
    assert "no engine could be built" in result.stderr and "SIGKILL" in result.stderr


def test_list_without_a_cache_says_where_it_looked_why_and_where_the_demo_keeps_its_engines(tmp_path):
    demo_cache = tmp_path / "xdg" / "facewatch" / "engines"
    demo_cache.mkdir(parents=True)
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    result = run_cli("engines", "list", env=env, timeout=60)
    assert result.returncode == 1
    assert "there is no engine cache at {} (the default under systemd".format(tmp_path / "state" / "engines") \
        in result.stderr
    assert "`facewatch demo` keeps its engines in {0}: facewatch engines list --cache-dir {0}".format(demo_cache) \
        in result.stderr
    assert "another folder: --cache-dir DIR" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("engines", "list", "--cache-dir", tmp_path / "nowhere", env=env, timeout=60)
    assert missing.returncode == 1 and "no engine cache at {} (--cache-dir)".format(tmp_path / "nowhere") \
        in missing.stderr


def test_the_demo_and_engines_list_agree_on_the_users_cache_folder(tmp_path, monkeypatch):
    from appliance.config import paths
    from appliance.commands import demo
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert paths.user_cache_dir() == str(tmp_path / "xdg" / "facewatch" / "engines")
    if os.geteuid() != 0:
        assert paths.default_cache_dir() == paths.user_cache_dir() == demo.user_cache_dir()


def test_a_build_that_creates_the_cache_says_where_and_why_there(tmp_path):
    state = tmp_path / "state"
    result = run_cli("engines", "build", "--precision", "fp32", env={"STATE_DIRECTORY": str(state)})
    assert result.returncode == 0, result.stderr
    cache = state / "engines"
    assert os.path.isdir(str(cache))
    assert ("engine cache {} (the default under systemd: $STATE_DIRECTORY/engines); created by this build, with {} "
            "above it; --cache-dir DIR or engine.cache_dir choose another".format(cache, state)) in result.stdout
    again = run_cli("engines", "build", "--precision", "fp32", env={"STATE_DIRECTORY": str(state)})
    assert again.returncode == 0 and "engine cache {} (the default under systemd".format(cache) in again.stdout
    assert "created" not in again.stdout


@pytest.mark.parametrize("action, described", [
    ("build", "Build the inference engine now and check it"),
    ("list", "List the engine cache"),
])
def test_engines_build_and_list_have_a_description_and_every_option_its_help(action, described):
    text = run_cli("engines", action, "--help", timeout=60).stdout
    assert described in " ".join(text.split())
    options = text.split("options:" if "options:" in text else "optional arguments:")[1].splitlines()[1:]
    for index, line in enumerate(options):
        if line.startswith("  -"):
            said = len(line.strip().split("  ")) > 1 or (index + 1 < len(options) and options[index + 1].startswith(
                " " * 6) and not options[index + 1].strip().startswith("-"))
            assert said, "{} has no help: {!r}".format(line.strip(), text)


def test_the_active_entry_says_what_was_requested_last_not_an_earlier_fallback(tmp_path):
    assert run_cli("engines", "build", "--precision", "fp16", "--cache-dir", tmp_path).returncode == 0
    assert run_cli("engines", "build", "--precision", "fp32", "--cache-dir", tmp_path).returncode == 0
    text = run_cli("engines", "list", "--cache-dir", tmp_path, timeout=60).stdout
    first = [line for line in text.splitlines() if line.startswith("* ")]
    assert len(first) == 1 and "FP32" in first[0] and "fallback" not in first[0]
    assert "    built as a fallback: FP16 requested but this platform has no fast FP16" in text
    assert text.rstrip().endswith("in use since the last request: FP32 requested")
