"""Inference backends, looked up by name and imported only when chosen.

Only the chosen backend's module is imported, so `tensorrt` and `pycuda` are never loaded on a host
that runs ONNX Runtime, and ONNX Runtime is never needed on a Jetson running TensorRT.
"""
import importlib

from appliance.errors import BackendUnavailable, UsageError

SUPPORTED_BACKENDS = {
    "onnxruntime": "appliance.backends.ort_backend",
    "tensorrt": "appliance.backends.trt_backend",
}
AUTO_ORDER = ("tensorrt", "onnxruntime")


def backend_module(name):
    """The module of backend `name`; BackendUnavailable if its libraries are missing here."""
    try:
        module_name = SUPPORTED_BACKENDS[name]
    except KeyError:
        raise UsageError("unknown backend {!r}; choose one of: auto, {}".format(
            name, ", ".join(sorted(SUPPORTED_BACKENDS))))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable("backend {!r} is not usable on this host: {}".format(name, exc))


def resolve_backend(name):
    """`auto` becomes the first backend that imports here (TensorRT, then ONNX Runtime)."""
    if name != "auto":
        backend_module(name)
        return name
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            backend_module(candidate)
            return candidate
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable("no inference backend is usable: " + "; ".join(reasons))
