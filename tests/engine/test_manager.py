import logging
import os

import pytest

from appliance.backends import platform_facts
from appliance.backends import ort_backend
from appliance.backends.base import Capabilities, Int8Source
from appliance.engine import key as engine_key
from appliance.engine import manager as engine_manager
from appliance.engine.manager import EngineFailed, EngineManager
from appliance.files import file_sha256
from appliance.images import read_image
from conftest import set_build_fault


@pytest.fixture
def reports():
    return []


@pytest.fixture
def manager(tmp_path, model, reports):
    return EngineManager(model, "onnxruntime", str(tmp_path / "engines"),
                         report=lambda **fields: reports.append(fields))


def pin_latencies(monkeypatch, **figures):
    """Timing pinned (this CPU's real figures would decide otherwise): {precision: ms}."""
    timed = []

    def latencies(detectors, frame, runs=15):
        timed.append(sorted(detectors))
        return {name: figures.get(name, 1.0) for name in detectors}
    monkeypatch.setattr(engine_manager, "latencies_ms", latencies)
    return timed


def test_first_build_builds_and_checks_the_second_reuses(manager, reports):
    first = manager.ensure("fp32")
    assert first.built_now and first.precision == "fp32" and first.fallback_reason is None
    assert [r["phase"] for r in reports if r["state"] == "building"][-1] == "acceptance"
    mtime = os.stat(first.path).st_mtime_ns
    second = manager.ensure("fp32")
    assert not second.built_now and second.path == first.path
    assert os.stat(first.path).st_mtime_ns == mtime
    assert reports[-1]["state"] == "ready" and reports[-1]["key"] == first.name


@pytest.mark.parametrize("field, value", [
    ("backend_version", "0.0.1"), ("device", "Jetson Nano"), ("compute_capability", "5.3"),
    ("l4t_release", "R32.7.1"),
])
def test_changing_a_platform_key_input_rebuilds(manager, monkeypatch, field, value):
    first = manager.ensure("fp32")
    changed = dict(manager.backend.platform(), **{field: value})
    monkeypatch.setattr(ort_backend.OrtBackend, "platform", lambda self: changed)
    second = manager.ensure("fp32")
    assert second.built_now and second.name != first.name


def test_changing_builder_settings_rebuilds(manager, monkeypatch):
    first = manager.ensure("fp32")
    monkeypatch.setattr(ort_backend.OrtBackend, "builder_settings", lambda self, mb: {"graph_optimization": "basic"})
    assert manager.ensure("fp32").name != first.name


def test_a_camera_of_another_shape_gets_its_own_engine(tmp_path, model):
    vga = EngineManager(model, "onnxruntime", str(tmp_path / "engines"), size=(640, 480)).ensure("fp32")
    wide = EngineManager(model, "onnxruntime", str(tmp_path / "engines"), size=(640, 384)).ensure("fp32")
    assert wide.built_now and wide.name != vga.name
    assert wide.sidecar["key_inputs"]["input_shape"] == [1, 3, 384, 640]
    assert "against the FP32 ONNX model under ONNX Runtime at 640x384" in wide.sidecar["acceptance"]


def test_the_cpu_s_integer_instructions_are_part_of_the_key(manager, monkeypatch):
    monkeypatch.setattr(ort_backend, "cpu_description", lambda: ("an AVX2 CPU", {"sse4_2", "avx", "avx2"}))
    avx2 = manager.ensure("fp32")
    monkeypatch.setattr(ort_backend, "cpu_description", lambda: ("a VNNI CPU", {"avx2", "avx512_vnni"}))
    vnni = manager.ensure("fp32")
    assert vnni.built_now and vnni.name != avx2.name
    assert vnni.sidecar["key_inputs"]["compute_capability"].endswith("+avx512_vnni")


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
        engine_key.key_inputs(model, platform, "int8", {"workspace_mb": 256}, "aa", size=(640, 384)),
        engine_key.key_inputs(model, platform, "int8", {"workspace_mb": 512}, "aa"),
    ]
    digests = {engine_key.key_digest(v) for v in variants}
    assert engine_key.key_digest(base) not in digests and len(digests) == len(variants)


def test_l4t_release_is_read_from_nv_tegra_release(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64\n")
    assert platform_facts.l4t_release(str(release)) == "R32.7.1"
    assert platform_facts.l4t_release(str(tmp_path / "none")) == ""


@pytest.mark.parametrize("damage, reason", [("truncate", "truncated"), ("flip", "corrupted")])
def test_a_damaged_engine_is_rebuilt_and_the_log_says_why(manager, caplog, damage, reason):
    first = manager.ensure("fp32")
    with open(first.path, "r+b") as f:
        if damage == "truncate":
            f.truncate(1000)
        else:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0x80]))
    with caplog.at_level(logging.INFO):
        second = manager.ensure("fp32")
    assert second.built_now and second.name == first.name
    assert reason in caplog.text
    assert file_sha256(second.path) == second.sidecar["sha256"]


def test_a_crashed_build_is_retried_once_with_half_the_workspace(manager, reports, monkeypatch):
    set_build_fault(monkeypatch, "sigkill:workspace>=256")
    engine = manager.ensure("fp32")
    assert engine.built_now and engine.sidecar["workspace_mb"] == 128
    assert "killed by SIGKILL" in engine.fallback_reason and "128 MiB" in engine.fallback_reason
    assert reports[-1]["state"] == "ready"


def test_a_build_that_always_crashes_fails_and_reports_it(manager, reports, monkeypatch):
    set_build_fault(monkeypatch, "sigkill")
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


def with_int8_source(monkeypatch, path):
    monkeypatch.setattr(ort_backend.OrtBackend, "int8_source",
                        lambda self, m: Int8Source(path, file_sha256(path), table=False))


def test_an_int8_engine_failing_acceptance_falls_back_with_the_reason(manager, model, tmp_path, monkeypatch):
    with_int8_source(monkeypatch, broken_int8_model(tmp_path, model))
    engine = manager.ensure("int8")
    assert engine.precision == "fp32"
    assert "INT8 engine unusable (acceptance check failed: found 0 of the 4 reference faces" in engine.fallback_reason
    assert engine.choice_reason == engine.fallback_reason
    assert not any(e["precision"] == "int8" for e in manager.store.entries())


def test_auto_on_onnxruntime_builds_both_and_serves_the_faster_measured(manager, reports, monkeypatch):
    timed = pin_latencies(monkeypatch, int8=4.5, fp32=9.0)
    engine = manager.ensure("auto")
    assert timed == [["fp32", "int8"]]
    assert engine.precision == "int8" and engine.latency_ms == 4.5
    assert engine.choice_reason == "auto: fastest measured here at 640x640: INT8 4.50 ms, FP32 9.00 ms"
    figures = {e["precision"]: e["latency_ms"] for e in manager.store.entries()}
    assert figures == {"int8": 4.5, "fp32": 9.0}
    assert reports[-1]["latency_ms"] == 4.5 and reports[-1]["choice_reason"] == engine.choice_reason
    assert manager.store.active_record() == {"engine": engine.name, "choice_reason": engine.choice_reason}


def test_auto_keeps_fp32_where_int8_measures_slower(manager, monkeypatch):
    pin_latencies(monkeypatch, int8=16.0, fp32=7.0)
    engine = manager.ensure("auto")
    assert engine.precision == "fp32" and "FP32 7.00 ms, INT8 16.00 ms" in engine.choice_reason


def test_a_restart_reuses_the_recorded_figures_without_timing_again(manager, monkeypatch):
    pin_latencies(monkeypatch, int8=16.0, fp32=7.0)
    first = manager.ensure("auto")
    timed = pin_latencies(monkeypatch, int8=1.0, fp32=99.0)
    second = manager.ensure("auto")
    assert timed == [] and not second.built_now and second.name == first.name


def test_auto_with_the_real_timer_serves_whichever_measured_faster_here(manager):
    engine = manager.ensure("auto")
    figures = {e["precision"]: e["latency_ms"] for e in manager.store.entries()}
    assert set(figures) == {"int8", "fp32"} and all(ms > 0 for ms in figures.values())
    assert engine.latency_ms == min(figures.values()) == figures[engine.precision]


def test_an_auto_candidate_failing_acceptance_is_out_and_the_reason_says_so(manager, model, tmp_path, monkeypatch):
    with_int8_source(monkeypatch, broken_int8_model(tmp_path, model))
    engine = manager.ensure("auto")
    assert engine.precision == "fp32"
    assert "INT8 out: acceptance check failed: found 0 of the 4 reference faces" in engine.choice_reason


def test_tensorrt_style_auto_takes_the_platform_s_choice_and_records_its_latency(manager, monkeypatch):
    monkeypatch.setattr(ort_backend.OrtBackend, "measure_candidates", False)
    engine = manager.ensure("auto")
    assert engine.precision == "int8" and engine.choice_reason == "auto: the platform has fast INT8"
    assert manager.store.entries()[0]["latency_ms"] == engine.latency_ms > 0


def test_an_explicit_precision_is_served_as_asked(manager):
    engine = manager.ensure("int8")
    assert engine.precision == "int8" and engine.fallback_reason is None and engine.built_now
    assert engine.choice_reason == "INT8 requested"
    assert engine.sidecar["key_inputs"]["calibration_sha256"] == manager.model.qdq_sha256


def test_without_a_qdq_model_int8_falls_back_and_says_why(manager, monkeypatch):
    manager.model = manager.model._replace(qdq_path=None, qdq_sha256=None)
    engine = manager.ensure("int8")
    assert engine.precision == "fp32"
    assert engine.fallback_reason == "INT8 requested but no INT8 Q/DQ model is listed in the manifest " \
                                     "(facewatch calibrate makes one)"


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

    opens = ort_backend.OrtBackend.open_engine

    def refuse(self, path, threads=0, input_shape=None):
        if not path.startswith(manager.store.directory):  # the reference model, not an engine
            return opens(self, path, threads, input_shape)
        attempts.append(path)
        raise RuntimeError("INVALID_GRAPH")
    monkeypatch.setattr(ort_backend.OrtBackend, "open_engine", refuse)
    with pytest.raises(EngineFailed, match="INVALID_GRAPH"):
        manager.load("fp32")
    assert len(attempts) == 1
