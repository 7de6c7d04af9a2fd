import logging
import os

import pytest

from appliance.backends import ort_backend
from appliance.engine import key as engine_key
from appliance.engine.manager import EngineFailed, EngineManager
from appliance.engine.policy import Capabilities
from appliance.files import file_sha256
from appliance.images import read_image


@pytest.fixture
def reports():
    return []


@pytest.fixture
def manager(tmp_path, model, reports):
    return EngineManager(model, "onnxruntime", str(tmp_path / "engines"),
                         report=lambda **fields: reports.append(fields))


@pytest.fixture
def avx2_cpu(monkeypatch):
    monkeypatch.setattr(ort_backend, "cpu_description", lambda: ("an AVX2 CPU", {"sse4_2", "avx", "avx2"}))


@pytest.fixture
def vnni_cpu(monkeypatch):
    monkeypatch.setattr(ort_backend, "cpu_description", lambda: ("a VNNI CPU", {"avx2", "avx512f", "avx512_vnni"}))


def test_first_build_builds_and_checks_the_second_reuses(manager, reports, avx2_cpu):
    first = manager.ensure("auto")
    assert first.built_now and first.precision == "fp32" and first.fallback_reason is None
    assert [r["phase"] for r in reports if r["state"] == "building"][-1] == "acceptance"
    mtime = os.stat(first.path).st_mtime_ns
    second = manager.ensure("auto")
    assert not second.built_now and second.path == first.path
    assert os.stat(first.path).st_mtime_ns == mtime
    assert reports[-1]["state"] == "ready" and reports[-1]["key"] == first.name


@pytest.mark.parametrize("field, value", [
    ("backend_version", "0.0.1"), ("device", "Jetson Nano"), ("compute_capability", "5.3"),
    ("l4t_release", "R32.7.1"),
])
def test_changing_a_platform_key_input_rebuilds(manager, monkeypatch, field, value):
    first = manager.ensure("auto")
    changed = dict(ort_backend.platform(), **{field: value})
    monkeypatch.setattr(ort_backend, "platform", lambda: changed)
    second = manager.ensure("auto")
    assert second.built_now and second.name != first.name


def test_changing_builder_settings_rebuilds(manager, monkeypatch):
    first = manager.ensure("auto")
    monkeypatch.setattr(ort_backend, "builder_settings", lambda m: {"graph_optimization": "basic"})
    assert manager.ensure("auto").name != first.name


def test_changing_the_model_or_input_shape_rebuilds(manager):
    first = manager.ensure("auto")
    manager.model = manager.model._replace(input_height=480)
    assert manager.ensure("auto").name != first.name


def test_every_key_input_changes_the_key(model):
    platform = {"backend": "tensorrt", "backend_version": "8.2.1", "device": "NVIDIA Tegra X1",
                "compute_capability": "5.3", "l4t_release": "R32.7.1"}
    base = engine_key.key_inputs(model, platform, "int8", {"workspace_mb": 256}, "aa")
    variants = [
        engine_key.key_inputs(model._replace(onnx_sha256="0" * 64), platform, "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, platform, "int8", {"workspace_mb": 256}, "bb"),
        engine_key.key_inputs(model, dict(platform, backend_version="8.2.3"), "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, dict(platform, device="Orin"), "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, dict(platform, compute_capability="8.7"), "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, dict(platform, l4t_release="R35.4.1"), "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, platform, "fp16", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model._replace(input_width=320), platform, "int8", {"workspace_mb": 256}, "aa"),
        engine_key.key_inputs(model, platform, "int8", {"workspace_mb": 512}, "aa"),
    ]
    digests = {engine_key.key_digest(v) for v in variants}
    assert engine_key.key_digest(base) not in digests and len(digests) == len(variants)


def test_l4t_release_is_read_from_nv_tegra_release(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n")
    assert engine_key.l4t_release(str(release)) == "R32.7.1"
    assert engine_key.l4t_release(str(tmp_path / "none")) == ""


@pytest.mark.parametrize("damage, reason", [("truncate", "truncated"), ("flip", "corrupted")])
def test_a_damaged_engine_is_rebuilt_and_the_log_says_why(manager, caplog, damage, reason):
    first = manager.ensure("auto")
    with open(first.path, "r+b") as f:
        if damage == "truncate":
            f.truncate(1000)
        else:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0x80]))
    with caplog.at_level(logging.INFO):
        second = manager.ensure("auto")
    assert second.built_now and second.name == first.name
    assert reason in caplog.text
    assert file_sha256(second.path) == second.sidecar["sha256"]


def test_a_crashed_build_is_retried_once_with_half_the_workspace(manager, reports, monkeypatch):
    monkeypatch.setenv("FACEWATCH_BUILD_FAULT", "sigkill:workspace>=256")
    engine = manager.ensure("fp32")
    assert engine.built_now and engine.sidecar["workspace_mb"] == 128
    assert "killed by SIGKILL" in engine.fallback_reason and "128 MiB" in engine.fallback_reason
    assert reports[-1]["state"] == "ready"


def test_a_build_that_always_crashes_fails_and_reports_it(manager, reports, monkeypatch):
    monkeypatch.setenv("FACEWATCH_BUILD_FAULT", "sigkill")
    with pytest.raises(EngineFailed, match="killed by SIGKILL"):
        manager.ensure("fp32")
    assert reports[-1]["state"] == "failed" and "SIGKILL" in reports[-1]["error"]
    assert not [n for n in os.listdir(manager.store.directory) if n.endswith(".engine") or ".tmp-" in n]


def broken_int8_model(tmp_path, model):
    """A model whose face-score head is zeroed: it finds no face, so its engine must fail acceptance."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper
    graph = onnx.load(model.onnx_path)
    for initializer in graph.graph.initializer:
        if "ClassHead" in initializer.name or "class" in initializer.name.lower():
            initializer.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializer) * 0, initializer.name))
    path = str(tmp_path / "broken.onnx")
    onnx.save(graph, path)
    return path


def test_an_int8_engine_failing_acceptance_falls_back_with_the_reason(manager, model, tmp_path, monkeypatch):
    broken = broken_int8_model(tmp_path, model)
    monkeypatch.setattr(ort_backend, "capabilities",
                        lambda m: Capabilities(fast_int8=True, fast_fp16=False, int8_unavailable=None,
                                               fp16_unavailable="no FP16 here"))
    monkeypatch.setattr(ort_backend, "int8_source", lambda m: (broken, file_sha256(broken)))
    engine = manager.ensure("int8")
    assert engine.precision == "fp32"
    assert "INT8 engine unusable (acceptance check failed: found 0 of the 4 reference faces" in engine.fallback_reason
    assert not any(e["precision"] == "int8" for e in manager.store.entries())


def test_auto_prefers_int8_where_the_platform_and_a_table_allow(manager, model, monkeypatch):
    monkeypatch.setattr(ort_backend, "capabilities",
                        lambda m: Capabilities(fast_int8=True, fast_fp16=True, int8_unavailable=None,
                                               fp16_unavailable=None))
    monkeypatch.setattr(ort_backend, "int8_source", lambda m: (m.onnx_path, m.onnx_sha256))
    engine = manager.ensure("auto")
    assert engine.precision == "int8" and engine.fallback_reason is None


def test_an_avx2_cpu_has_no_fast_int8_and_says_so(manager, avx2_cpu):
    engine = manager.ensure("int8")
    assert engine.precision == "fp32"
    assert engine.fallback_reason == "INT8 requested but this platform has no fast INT8"


def test_int8_on_a_vnni_cpu_is_the_shipped_qdq_model_and_passes_acceptance(manager, model, vnni_cpu):
    engine = manager.ensure("auto")
    assert engine.precision == "int8" and engine.fallback_reason is None and engine.built_now
    assert engine.sidecar["key_inputs"]["calibration_sha256"] == model.qdq_sha256


def replace_engine_keeping_a_matching_sidecar(manager, engine, data):
    """What no checksum can catch: bytes that are whole and described by their sidecar, yet do not load."""
    temp = manager.store.temp_path(engine.name)
    with open(temp, "wb") as f:
        f.write(data)
    manager.store.install(engine.name, temp, dict(engine.sidecar))


def test_a_cached_engine_that_passes_its_checks_but_does_not_load_is_rebuilt_once(manager, caplog):
    first = manager.ensure("fp32")
    replace_engine_keeping_a_matching_sidecar(manager, first, b"not an engine" * 1000)
    assert manager.store.verified(first.name, first.sidecar["key_inputs"])
    with caplog.at_level(logging.WARNING):
        engine, detector = manager.load("fp32")
    with detector:
        assert engine.built_now and engine.name == first.name
        assert "does not load" in caplog.text and "building it again" in caplog.text
        assert len(detector.detect(read_image(manager.model.golden["image"])).boxes) == 4


def test_an_engine_that_never_loads_fails_once_not_in_a_loop(manager, monkeypatch):
    attempts = []

    def refuse(path, threads=0, input_shape=None):
        attempts.append(path)
        raise RuntimeError("INVALID_GRAPH")
    monkeypatch.setattr(ort_backend, "open_engine", refuse)
    with pytest.raises(EngineFailed, match="onnxruntime cannot load .*INVALID_GRAPH"):
        manager.load("fp32")
    assert len(attempts) == 1
