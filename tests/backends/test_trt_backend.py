"""appliance/backends/trt_*.py against fakes of TensorRT 8.2, 8.6, 10.3 and 11.1 (tests/fakes/).

A call to a name the version lacks raises AttributeError and fails the test; Python deprecation
warnings are recorded and must stay within what each version leaves no alternative to.
"""
import importlib
import json
import os
import sys
import warnings

import pytest

from appliance.engine.manager import EngineManager
from appliance.calibration import cache_format
from appliance.files import file_sha256
from appliance.manifest import CalibrationTable
from conftest import TESTS

FAKES = os.path.join(TESTS, "fakes")
VERSIONS = {"8.2.1": "nano", "8.6.1": "orin", "10.3.0": "orin", "11.1.0": "thor"}
# The only deprecated name facewatch may touch: set_dynamic_range is TensorRT 10.x's sole implicit INT8 route.
ALLOWED_DEPRECATIONS = {"10.3.0": {"ITensor.set_dynamic_range"}}
FAKE_MODULES = ("tensorrt", "pycuda", "pycuda.driver", "pycuda.compiler", "appliance.backends.trt_backend",
                "appliance.backends.trt_common", "appliance.backends.trt_build", "appliance.backends.trt_runtime",
                "appliance.backends.cuda_buffers", "appliance.backends.cuda_preprocess")


class TensorRTUnderTest:
    """The TensorRT backend as the engine manager sees it, on the fake of one version."""

    def __init__(self):
        module = importlib.import_module("appliance.backends.trt_backend")
        self.trt = sys.modules["tensorrt"]
        self.TensorRTError = importlib.import_module("appliance.backends.trt_common").TensorRTError
        self.backend = module.TrtBackend()
        self.table_for_version = module.table_for_version
        self.capabilities = self.backend.capabilities
        self.open_engine = self.backend.open_engine

    def int8_source(self, model):
        return self.backend.int8_source(model).path

    def build_engine(self, job, progress):
        """As the manager hands it over: with the table's ranges for an implicit INT8 build."""
        if job["precision"] == "int8" and job["int8_source"] and not self.trt.__version__.startswith("11."):
            job = dict(job, dynamic_ranges=cache_format.read_table(job["int8_source"]).amax)
        self.backend.build_engine(job, progress)


@pytest.fixture(params=sorted(VERSIONS, key=lambda v: tuple(map(int, v.split(".")))))
def trt(request, monkeypatch):
    version = request.param
    monkeypatch.setenv("FAKE_TENSORRT_VERSION", version)
    monkeypatch.setenv("FAKE_GPU", VERSIONS[version])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([FAKES, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(FAKES)
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)
    under_test = TensorRTUnderTest()
    no_nvcc_here(monkeypatch, "")  # whatever this host has; the `nvcc` fixture gives one
    yield under_test
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


def calibration_table(path, model_path, version="8.2.1", names=None):
    import onnx
    graph = onnx.load(model_path).graph
    names = names or [graph.input[0].name] + [o for node in graph.node for o in node.output]
    path.write_text(cache_format.format_table(dict.fromkeys(names, 4.0), version))
    return CalibrationTable(str(path), file_sha256(str(path)), cache_format.ALGORITHM, version)


@pytest.fixture
def int8_model(model, tmp_path):
    table = calibration_table(tmp_path / "calibration.cache", model.onnx_path)
    # The fake runs any ONNX; the shipped FP32 model stands in for the Q/DQ one on the 11.x route.
    return model._replace(calibration=(table,), qdq_path=model.onnx_path, qdq_sha256=model.onnx_sha256)


def deprecations(trt_backend):
    return set(sys.modules["tensorrt"].DEPRECATED_CALLS) - ALLOWED_DEPRECATIONS.get(
        sys.modules["tensorrt"].__version__, set())


def job(model, precision, tmp_path, source=None):
    return {"backend": "tensorrt", "onnx": model.onnx_path, "int8_source": source, "precision": precision,
            "output": str(tmp_path / "out.engine"), "workspace_mb": 256, "fast_fp16": True,
            "input_name": model.input_name, "input_shape": [1, 3, model.input_height, model.input_width],
            "timing_cache": str(tmp_path / "timing.cache")}


def major(version):
    return int(version.split(".")[0])


EXPECTED_AUTO = {"8.2.1": "fp16", "8.6.1": "int8", "10.3.0": "int8", "11.1.0": "int8"}


def test_auto_precision_follows_the_platform(trt, int8_model):
    from appliance.engine import policy
    decision = policy.choose("auto", trt.capabilities(int8_model))
    assert decision.precision == EXPECTED_AUTO[trt.trt.__version__]


def test_the_whole_lifecycle_builds_checks_and_serves(trt, int8_model, tmp_path):
    reports = []
    manager = EngineManager(int8_model, "tensorrt", str(tmp_path / "engines"),
                            report=lambda **fields: reports.append(fields))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        engine = manager.ensure("auto")
        assert engine.built_now and engine.precision == EXPECTED_AUTO[trt.trt.__version__]
        assert reports[-1]["state"] == "ready"
        detector = manager.open_detector(engine)
        import numpy as np
        found = detector.detect(np.zeros((480, 640, 3), np.uint8))
        detector.close()
    assert len(found.boxes) == 0
    assert sys.modules["pycuda.driver"].live_allocations() == 0
    assert not deprecations(trt)
    assert not manager.ensure("auto").built_now


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_builds_set_the_right_flags_and_ranges(trt, int8_model, tmp_path, precision):
    version = trt.trt.__version__
    source = trt.int8_source(int8_model) if precision == "int8" else None
    if precision == "fp16" and version.startswith("11."):
        with pytest.raises(trt.TensorRTError, match="cannot build FP16"):
            trt.build_engine(job(int8_model, precision, tmp_path, source), lambda *a: None)
        return
    phases = []
    trt.build_engine(job(int8_model, precision, tmp_path, source), lambda phase, fraction: phases.append(phase))
    with open(str(tmp_path / "out.engine"), "rb") as f:
        header = json.loads(f.readline().decode())
    assert header["version"] == version and header["workspace"] == 256 << 20
    if version.startswith("11."):
        assert header["flags"] == [] and header["ranges"] == 0
    else:
        assert ("FP16" in header["flags"]) == (precision != "fp32")
        assert ("INT8" in header["flags"]) == (precision == "int8")
        assert (header["ranges"] > 200) == (precision == "int8")
    assert phases[0] == "parse" and phases[-1] == "write"
    if major(version) >= 10:
        assert "Building engine" in phases  # TensorRT's own progress monitor
    assert not deprecations(trt)


def test_the_timing_cache_is_persisted_and_reused(trt, model, tmp_path):
    trt.build_engine(job(model, "fp32", tmp_path), lambda *a: None)
    with open(str(tmp_path / "timing.cache")) as f:
        assert json.load(f)["entries"] == 1
    trt.build_engine(job(model, "fp32", tmp_path), lambda *a: None)
    with open(str(tmp_path / "timing.cache")) as f:
        assert json.load(f)["entries"] == 2


def test_a_table_for_another_model_is_rejected_clearly(trt, model, tmp_path):
    if trt.trt.__version__.startswith("11."):
        pytest.skip("TensorRT 11 reads INT8 scales from the Q/DQ model, not from a table")
    table = calibration_table(tmp_path / "other.cache", model.onnx_path, names=["conv1_out", "relu7_out"])
    with pytest.raises(trt.TensorRTError, match="names none of the network's .* tensors: it was made for another"):
        trt.build_engine(job(model, "int8", tmp_path, table.path), lambda *a: None)


def test_an_engine_from_another_tensorrt_is_refused_clearly(trt, model, tmp_path, monkeypatch):
    trt.build_engine(job(model, "fp32", tmp_path), lambda *a: None)
    monkeypatch.setattr(sys.modules["tensorrt"], "__version__", "7.1.3")
    with pytest.raises(trt.TensorRTError, match="does not fit this TensorRT or GPU"):
        trt.open_engine(str(tmp_path / "out.engine"), input_shape=[1, 3, 640, 640])
    assert sys.modules["pycuda.driver"].live_allocations() == 0


def test_an_unmet_precision_falls_back_with_its_reason(trt, model, tmp_path):
    without_int8 = model._replace(calibration=(), qdq_path=None, qdq_sha256=None, int8_onnx_path=None,
                                  int8_onnx_sha256=None)
    manager = EngineManager(without_int8, "tensorrt", str(tmp_path / "engines"))
    engine = manager.ensure("int8")
    version = trt.trt.__version__
    if version == "8.2.1":
        assert engine.precision == "fp16" and "INT8 requested but this platform has no fast INT8" in engine.fallback_reason
    elif version.startswith("11."):
        assert engine.precision == "fp32" and "builds INT8 only from a Q/DQ model" in engine.fallback_reason
    else:
        assert engine.precision == "fp16" and "no INT8 calibration table" in engine.fallback_reason


def test_int8_builds_from_the_shipped_files_of_each_version(trt, model, tmp_path):
    manager = EngineManager(model, "tensorrt", str(tmp_path / "engines"))
    engine = manager.ensure("int8")
    version = trt.trt.__version__
    if version == "8.2.1":
        assert engine.precision == "fp16"    # the fake's 8.2.1 is a Nano: no fast INT8
        return
    assert engine.precision == "int8" and engine.fallback_reason is None
    header, _, network = open(engine.path, "rb").read().partition(b"\n")
    expected = model.qdq_path if version.startswith("11.") else model.int8_onnx_path
    assert network == open(expected, "rb").read()
    if not version.startswith("11."):
        shipped = sum(1 for line in open(model.calibration[0].path) if ": " in line)
        assert json.loads(header.decode())["ranges"] == shipped


def test_the_table_for_the_running_version_is_chosen(trt, model):
    version = trt.trt.__version__
    if version.startswith("11."):
        pytest.skip("TensorRT 11 reads the Q/DQ model")
    chosen = trt.table_for_version(model.calibration, version)
    listed = [table.trt_version for table in model.calibration]
    release = version.rsplit(".", 1)[0]
    assert chosen.trt_version.startswith(release) if any(v.startswith(release) for v in listed) else \
        chosen is model.calibration[0]


def test_an_engine_is_built_for_exactly_the_camera_shaped_input(trt, model, tmp_path):
    manager = EngineManager(model, "tensorrt", str(tmp_path / "engines"), size=(640, 384))
    engine = manager.ensure("fp32")
    header = json.loads(open(engine.path, "rb").readline().decode())
    assert header["profiles"] == [{model.input_name: [[1, 3, 384, 640]] * 3}]
    assert engine.sidecar["key_inputs"]["input_shape"] == [1, 3, 384, 640]
    with pytest.raises(trt.TensorRTError, match="refused"):
        trt.open_engine(engine.path, input_shape=[1, 3, 480, 640])
    assert sys.modules["pycuda.driver"].live_allocations() == 0


def test_the_measured_latency_is_recorded_and_reported(trt, model, tmp_path):
    reports = []
    manager = EngineManager(model, "tensorrt", str(tmp_path / "engines"), size=(640, 480),
                            report=lambda **fields: reports.append(fields))
    engine = manager.ensure("auto")
    assert engine.latency_ms > 0 and json.load(open(manager.store.sidecar_path(engine.name)))["latency_ms"] == \
        engine.latency_ms
    ready = reports[-1]
    assert ready["latency_ms"] == engine.latency_ms and ready["input_shape"] == [1, 3, 480, 640]
    assert ready["choice_reason"].startswith("auto: ")


def no_nvcc_here(monkeypatch, folder):
    """PATH without nvcc and JetPack's place for it at `folder`/cuda/bin/nvcc (absent): preprocessing on
    the CPU. Returns that path."""
    module = importlib.import_module("appliance.backends.cuda_preprocess")
    absent = os.path.join(folder or os.devnull, "cuda", "bin", "nvcc")
    monkeypatch.setattr(module.shutil, "which", lambda name, *args, **kwargs: None)
    monkeypatch.setattr(module, "JETPACK_NVCC", absent)
    return absent


@pytest.fixture
def nvcc(trt, monkeypatch):
    """A CUDA compiler 'on PATH' for the fake pycuda.compiler (which runs the kernel's arithmetic in NumPy)."""
    module = importlib.import_module("appliance.backends.cuda_preprocess")
    monkeypatch.setattr(module, "find_nvcc", lambda: "/usr/local/cuda/bin/nvcc")
    return importlib.import_module("pycuda.compiler")


@pytest.mark.parametrize("frame_size", [(640, 480), (1280, 720)])
def test_frames_are_letterboxed_on_the_gpu_and_find_the_same_faces(trt, nvcc, model, tmp_path, frame_size):
    import cv2
    import numpy as np
    from appliance.engine.detector import Detector
    manager = EngineManager(model, "tensorrt", str(tmp_path / "engines"), size=(640, 480))
    engine = manager.ensure("fp32")
    golden = cv2.resize(cv2.imread(model.golden["image"]), frame_size)
    with manager.open_detector(engine) as on_gpu:
        assert on_gpu.preprocessing == "gpu"
        found = on_gpu.detect(golden)
    with Detector(manager.backend.open_engine(engine.path, input_shape=[1, 3, 480, 640]), model,
                  size=(640, 480)) as reference:
        reference._preprocess = importlib.import_module("appliance.models.retinaface").Preprocessor(
            640, 480, model.mean)
        expected = reference.detect(golden)
    assert len(found.boxes) == len(expected.boxes) > 0
    assert np.abs(found.boxes - expected.boxes).max() < 1.0
    assert nvcc.COMPILED[-1][1] == os.path.join(manager.store.directory, "cuda-kernels")
    assert sys.modules["pycuda.driver"].live_allocations() == 0


def test_without_nvcc_preprocessing_stays_on_the_cpu_and_says_why(trt, model, tmp_path, monkeypatch):
    import cv2
    absent = no_nvcc_here(monkeypatch, str(tmp_path))
    manager = EngineManager(model, "tensorrt", str(tmp_path / "engines"), size=(640, 480))
    engine = manager.ensure("fp32")
    with manager.open_detector(engine) as detector:
        found = detector.detect(cv2.imread(model.golden["image"]))
    assert detector.preprocessing == "cpu: nvcc is not on PATH nor at " + absent
    assert len(found.boxes) == len(model.golden["detections"])


def test_tensorrt_is_served_from_one_inference_thread_whatever_is_asked(trt):
    from appliance.backends import load_backend, resolve_backend
    from appliance.daemon.inference_plan import plan_inference
    backend = load_backend(resolve_backend("auto"))
    plan = plan_inference(4, 0, (backend.max_workers, backend.workers_limit_reason), 8)
    assert backend.name == "tensorrt" and plan.workers == 1
    assert plan.reason == "engine.workers = 4 asked, 1 used: TensorRT serves from one thread (one CUDA context, " \
                          "one execution context)"
