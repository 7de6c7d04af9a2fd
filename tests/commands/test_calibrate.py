import cv2
import numpy as np
import onnx
import onnxruntime
import pytest

from appliance.calibration import cache_format, graph
from appliance.engine.detector import Detector
from appliance.backends.ort_backend import OrtSession
from appliance.engine.evaluation import match_counts
from conftest import run_cli


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, model):
    """`facewatch calibrate` on three images: the golden image and two frames of the demo clip."""
    folder = tmp_path_factory.mktemp("images")
    cv2.imwrite(str(folder / "golden.png"), cv2.imread(model.golden["image"]))
    capture = cv2.VideoCapture(str(model.directory + "/../examples/demo/clip.avi"))
    for index in range(2):
        capture.set(cv2.CAP_PROP_POS_FRAMES, 30 * index + 10)
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(folder / "frame{}.jpg".format(index)), frame)
    (folder / "provenance.json").write_text("{}")    # not an image: ignored
    out = tmp_path_factory.mktemp("out") / "new" / "calibration.cache"
    result = run_cli("calibrate", "--images", folder, "--out", out)
    return result, out


def test_writes_a_table_an_equalized_model_and_a_qdq_model(calibrated):
    result, out = calibrated
    assert result.returncode == 0, result.stderr
    assert "calibrating retinaface_mnet025 on 3 images" in result.stdout
    for name in ("calibration.cache", "calibration.fp32.onnx", "calibration.qdq.onnx"):
        assert (out.parent / name).stat().st_size > 0
        assert name in result.stdout


def test_reports_progress_of_every_phase(calibrated):
    stderr = calibrated[0].stderr
    for phase in ("channels", "ranges", "histograms", "entropy"):
        assert phase in stderr


def test_the_table_names_the_models_activations_but_the_float_ones(calibrated, model):
    cache = cache_format.read_table(str(calibrated[1]))
    assert cache.version_tag == "8201" and cache.algorithm == "EntropyCalibration2"
    activations = graph.activation_names(onnx.load(model.onnx_path))
    kept_float = [n for n in activations if n.startswith(model.int8_keep_float)]
    assert set(cache.amax) == set(activations) - set(kept_float)
    assert all(value > 0 for value in cache.amax.values())


def test_the_equalized_model_computes_what_the_shipped_one_does(calibrated, model, detector):
    tensor, _ = detector.preprocess(cv2.imread(model.golden["image"]))
    outputs = [onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": tensor})
               for path in (model.onnx_path, str(calibrated[1].parent / "calibration.fp32.onnx"))]
    for shipped, equalized in zip(*outputs):
        np.testing.assert_allclose(equalized, shipped, atol=1e-3)


def test_the_qdq_model_finds_the_golden_faces(calibrated, model):
    qdq_path = str(calibrated[1].parent / "calibration.qdq.onnx")
    kinds = {node.op_type for node in onnx.load(qdq_path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    with Detector(OrtSession(qdq_path), model) as detector:
        found = detector.detect(cv2.imread(model.golden["image"]))
    reference = [face["box"] for face in model.golden["detections"]]
    scores = match_counts([(found.boxes, reference)])
    assert scores.recall == 1.0 and scores.precision == 1.0


def test_an_empty_folder_is_a_usage_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    result = run_cli("calibrate", "--images", tmp_path, "--out", tmp_path / "c.cache")
    assert result.returncode == 2
    assert "the folder has no images" in result.stderr
    assert not (tmp_path / "c.cache").exists()


def test_a_missing_folder_is_a_usage_error(tmp_path):
    result = run_cli("calibrate", "--images", tmp_path / "nowhere")
    assert result.returncode == 2 and "no such folder" in result.stderr


def test_unreadable_images_are_named_before_any_work(tmp_path, model):
    cv2.imwrite(str(tmp_path / "good.png"), cv2.imread(model.golden["image"]))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    result = run_cli("calibrate", "--images", tmp_path, "--out", tmp_path / "c.cache")
    assert result.returncode == 2
    assert "2 of 3 calibration images cannot be read" in result.stderr
    assert "broken.jpg" in result.stderr and "empty.png" in result.stderr
    assert not (tmp_path / "c.cache").exists()


def test_a_set_of_images_without_faces_makes_no_model_and_says_why(tmp_path):
    images = tmp_path / "black"
    images.mkdir()
    for index in range(3):
        cv2.imwrite(str(images / "{}.png".format(index)), np.zeros((480, 640, 3), np.uint8))
    result = run_cli("calibrate", "--images", images, "--out", tmp_path / "out" / "c.cache")
    assert result.returncode == 1
    assert "fails the acceptance check on the golden image" in result.stderr and "nothing was written" in result.stderr
    assert not (tmp_path / "out" / "c.cache").exists() and not (tmp_path / "out" / "c.qdq.onnx").exists()


@pytest.mark.parametrize("target, message", [("folder", "is a folder, not a file"),
                                             ("/dev/full", "is a device, not a file")])
def test_an_output_that_cannot_be_a_file_is_refused_before_any_work(tmp_path, model, target, message):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "golden.png"), cv2.imread(model.golden["image"]))
    out = tmp_path / "folder" if target == "folder" else target
    if target == "folder":
        out.mkdir()
    result = run_cli("calibrate", "--images", images, "--out", out)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "calibrating" not in result.stdout
    import os
    import stat
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_trt_version_that_is_not_x_y_z_is_a_usage_error(tmp_path):
    result = run_cli("calibrate", "--images", tmp_path, "--trt-version", "abc")
    assert result.returncode == 2 and "expected a TensorRT version X.Y.Z" in result.stderr
