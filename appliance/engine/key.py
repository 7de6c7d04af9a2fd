"""The engine cache key: everything an engine's validity depends on (SPEC: Files on the device)."""
import collections
import hashlib
import json


def key_inputs(model, platform, precision, builder_settings, calibration_sha256="", size=None):
    """The ordered inputs of the key. platform: backend, backend_version, device, compute_capability,
    l4t_release; size: the network input's (width, height), by default the manifest's."""
    width, height = size or (model.input_width, model.input_height)
    return collections.OrderedDict([
        ("model", model.name),
        ("onnx_sha256", model.onnx_sha256),
        ("calibration_sha256", calibration_sha256 if precision == "int8" else ""),
        ("backend", platform["backend"]),
        ("backend_version", platform["backend_version"]),
        ("device", platform["device"]),
        ("compute_capability", platform["compute_capability"]),
        ("l4t_release", platform["l4t_release"]),
        ("precision", precision),
        ("input_shape", [1, 3, height, width]),
        ("builder", collections.OrderedDict(sorted(builder_settings.items()))),
    ])


def key_digest(inputs):
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:24]


def engine_name(inputs):
    """File stem: readable prefix, exact digest: retinaface_mnet025-fp32-onnxruntime-<digest>."""
    return "{}-{}-{}-{}".format(inputs["model"], inputs["precision"], inputs["backend"], key_digest(inputs))
