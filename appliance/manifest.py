"""engines/manifest.json: the shipped models, their checksums, and how to feed and read them."""
import os
from typing import NamedTuple, Optional

from appliance import shipped, untrusted
from appliance.errors import ModelError
from appliance.files import FileRefused, file_sha256, read_regular_file

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


MAX_MANIFEST_BYTES = 1 << 20


def candidate_directories():
    """Where the engines/ folder may be: $FACEWATCH_ENGINES_DIR, else the source tree or installed data."""
    override = os.environ.get("FACEWATCH_ENGINES_DIR")
    if override:
        return [override]
    return shipped.candidates("engines")


def find_media_dir(name):
    """examples/NAME in the source tree or where facewatch is installed."""
    directory = shipped.find(os.path.join("examples", name))
    if directory is None or not os.path.isdir(directory):
        raise ModelError("bundled media {!r} not found in: {}".format(
            name, ", ".join(shipped.candidates(os.path.join("examples", name)))))
    return directory


def find_engines_dir():
    for directory in candidate_directories():
        if os.path.isfile(os.path.join(directory, MANIFEST_NAME)):
            return directory
    raise ModelError("no {} found in: {}".format(MANIFEST_NAME, ", ".join(candidate_directories())))


def load_manifest(directory=None):
    directory = directory or find_engines_dir()
    path = os.path.join(directory, MANIFEST_NAME)
    try:
        document = untrusted.load_json(read_regular_file(path, MAX_MANIFEST_BYTES), MAX_MANIFEST_BYTES, "it", 8)
    except (FileRefused, untrusted.Refused) as exc:
        raise ModelError("cannot read {}: {}".format(path, exc))
    if not isinstance(document, dict):
        raise ModelError("{} is not a JSON object; reinstall facewatch".format(path))
    return document, directory


def load_model(name=None, directory=None, verify=True):
    """The ModelSpec of `name` (default: the manifest's default), its files checked against their sha256."""
    document, directory = load_manifest(directory)
    path = os.path.join(directory, MANIFEST_NAME)
    name = name or document.get("default_model")
    entry = (document.get("models") or {}).get(name) if isinstance(document.get("models"), dict) else None
    if entry is None:
        raise ModelError("model {!r} is not in {}".format(name, path))
    try:
        spec = _spec_from_entry(name, entry, directory)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError("{}: the entry of {!r} is malformed ({}: {}); reinstall facewatch".format(
            path, name, type(exc).__name__, exc))
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

