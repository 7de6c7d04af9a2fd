"""Inference backends, looked up by name and imported only when chosen.

Only the chosen backend's module is imported, so `tensorrt` and `pycuda` are never loaded on a host
that runs ONNX Runtime, and ONNX Runtime is never needed on a Jetson running TensorRT. Each module
defines a subclass of appliance.backends.base.Backend.
"""
import importlib

from appliance.errors import BackendUnavailable, UsageError

SUPPORTED_BACKENDS = {
    "onnxruntime": ("appliance.backends.ort_backend", "OrtBackend"),
    "tensorrt": ("appliance.backends.trt_backend", "TrtBackend"),
}
AUTO_ORDER = ("tensorrt", "onnxruntime")


def load_backend(name):
    """The Backend called `name`; BackendUnavailable if its libraries are missing here."""
    try:
        module_name, class_name = SUPPORTED_BACKENDS[name]
    except KeyError:
        raise UsageError("unknown backend {!r}; choose one of: auto, {}".format(
            name, ", ".join(sorted(SUPPORTED_BACKENDS))))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable("backend {!r} is not usable on this host: {}".format(name, exc))
    return getattr(module, class_name)()


def resolve_backend(name):
    """`auto` becomes the first backend that imports here (TensorRT, then ONNX Runtime)."""
    if name != "auto":
        load_backend(name)
        return name
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            load_backend(candidate)
            return candidate
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable("no inference backend is usable: " + "; ".join(reasons))
