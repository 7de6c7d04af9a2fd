"""engines/manifest.json: the shipped models, their checksums, and how to feed and read them."""
import hashlib
import json
import os
import sys
from typing import NamedTuple, Optional

from appliance.errors import ModelError

MANIFEST_NAME = "manifest.json"

CalibrationTable = NamedTuple("CalibrationTable", [
    ("path", str), ("sha256", str), ("algorithm", str), ("trt_version", str)])

ModelSpec = NamedTuple("ModelSpec", [
    ("name", str),
    ("family", str),
    ("directory", str),
    ("onnx_path", str),
    ("onnx_sha256", str),
    ("input_name", str),
    ("input_width", int),
    ("input_height", int),
    ("output_names", tuple),
    ("mean", tuple),
    ("calibration", tuple),    # CalibrationTable, newest first
    ("qdq_path", Optional[str]),
    ("qdq_sha256", Optional[str]),
    ("int8_onnx_path", Optional[str]),   # the equalized FP32 graph the calibration tables describe
    ("int8_onnx_sha256", Optional[str]),
    ("int8_keep_float", tuple),          # tensor-name prefixes that stay out of INT8
    ("golden", dict),          # {"image": path, "detections": [...], "tolerances": {...}}
])


SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def candidate_directories():
    """Where the engines/ folder may be: env override, the source tree, then installed data."""
    override = os.environ.get("FACEWATCH_ENGINES_DIR")
    if override:
        return [override]
    return [os.path.join(SOURCE_TREE, "engines"),
            os.path.join(sys.prefix, "share", "facewatch", "engines"),
            "/usr/share/facewatch/engines"]


def find_media_dir(name):
    """examples/NAME in the source tree, or share/facewatch/NAME where installed."""
    candidates = [os.path.join(SOURCE_TREE, "examples", name),
                  os.path.join(sys.prefix, "share", "facewatch", name),
                  os.path.join("/usr/share/facewatch", name)]
    for directory in candidates:
        if os.path.isdir(directory):
            return directory
    raise ModelError("bundled media {!r} not found in: {}".format(name, ", ".join(candidates)))


def find_engines_dir():
    for directory in candidate_directories():
        if os.path.isfile(os.path.join(directory, MANIFEST_NAME)):
            return directory
    raise ModelError("no {} found in: {}".format(MANIFEST_NAME, ", ".join(candidate_directories())))


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(directory=None):
    directory = directory or find_engines_dir()
    path = os.path.join(directory, MANIFEST_NAME)
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError("cannot read {}: {}".format(path, exc))
    return document, directory


def load_model(name=None, directory=None, verify=True):
    """The ModelSpec of `name` (default: the manifest's default), its files checked against their sha256."""
    document, directory = load_manifest(directory)
    name = name or document["default_model"]
    try:
        entry = document["models"][name]
    except KeyError:
        raise ModelError("model {!r} is not in {}".format(name, os.path.join(directory, MANIFEST_NAME)))
    spec = _spec_from_entry(name, entry, directory)
    if verify:
        verify_file(spec.onnx_path, spec.onnx_sha256)
    return spec


def verify_file(path, expected_sha256):
    if not os.path.isfile(path):
        raise ModelError("{} is missing; reinstall facewatch".format(path))
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ModelError("{} has sha256 {} but the manifest says {}: the file was altered; reinstall it"
                         .format(path, actual, expected_sha256))


def _spec_from_entry(name, entry, directory):
    def local(relative):
        return os.path.join(directory, relative) if relative else None

    calibration = tuple(CalibrationTable(local(t["file"]), t["sha256"], t["algorithm"], t["trt_version"])
                        for t in entry.get("calibration", []))  # type: tuple
    qdq = entry.get("qdq") or {}
    int8_onnx = entry.get("int8_onnx") or {}
    golden = dict(entry.get("golden") or {})
    if golden:
        golden["image"] = local(golden["image"])
    return ModelSpec(
        name=name,
        family=entry["family"],
        directory=directory,
        onnx_path=local(entry["onnx"]["file"]),
        onnx_sha256=entry["onnx"]["sha256"],
        input_name=entry["input"]["name"],
        input_width=int(entry["input"]["width"]),
        input_height=int(entry["input"]["height"]),
        output_names=tuple(entry["outputs"]),
        mean=tuple(entry["preprocessing"]["mean"]),
        calibration=calibration,
        qdq_path=local(qdq.get("file")),
        qdq_sha256=qdq.get("sha256"),
        int8_onnx_path=local(int8_onnx.get("file")),
        int8_onnx_sha256=int8_onnx.get("sha256"),
        int8_keep_float=tuple(entry.get("int8_keep_float", ())),
        golden=golden,
    )

