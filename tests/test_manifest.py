import json
import shutil

import pytest

from appliance.models.detections import box_iou
from appliance.errors import ModelError
from appliance.images import read_image
from appliance.files import file_sha256
from appliance.manifest import load_model


def test_manifest_records_the_shipped_model_and_its_checksum(model):
    assert model.family == "retinaface"
    assert model.input_name == "input"
    assert model.output_names == ("loc", "conf", "landmarks")
    assert file_sha256(model.onnx_path) == model.onnx_sha256


def test_golden_reference_detections_are_reproduced(model, detector):
    golden = model.golden
    detections = detector.detect(read_image(golden["image"]))
    reference = [face["box"] for face in golden["detections"]]
    assert len(detections.boxes) == len(reference) >= 3
    assert box_iou(detections.boxes, reference).max(axis=1).min() > 0.99


def test_missing_model_file_is_named(tmp_path, model):
    shutil.copy(model.directory + "/manifest.json", str(tmp_path))
    with pytest.raises(ModelError, match="retinaface_mnet025.onnx is missing"):
        load_model(directory=str(tmp_path))


def test_unknown_model_name_is_named(model):
    with pytest.raises(ModelError, match="'yolo' is not in"):
        load_model("yolo", directory=model.directory)


def test_manifest_is_valid_json_with_a_schema_version(model):
    with open(model.directory + "/manifest.json") as f:
        assert json.load(f)["v"] == 1


def test_the_shipped_int8_files_match_their_checksums(model):

    files = [(table.path, table.sha256) for table in model.calibration]
    files += [(model.qdq_path, model.qdq_sha256), (model.int8_onnx_path, model.int8_onnx_sha256)]
    assert len(files) == 5
    for path, sha256 in files:
        assert file_sha256(path) == sha256, path
