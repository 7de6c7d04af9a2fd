"""Inference backends, looked up by name and imported only when chosen; and the words that choose them.

The vocabulary of the engine settings lives here, once: the backend names (AUTO and BACKENDS, in the
order `auto` tries them) and the precisions (AUTO and PRECISIONS, fastest kind first). The configuration's
choices, the command line's and the remote `rebuild` command's are these tuples, imported.

Only the chosen backend's module is imported, so `tensorrt` and `pycuda` are never loaded on a host
that runs ONNX Runtime, and ONNX Runtime is never needed on a Jetson running TensorRT. Each module
defines a subclass of appliance.backends.base.Backend.
"""
import collections
import importlib

from appliance.errors import BackendUnavailable, UsageError

AUTO = "auto"

# The precisions an engine is built in, fastest kind first: the order `auto` tries them and a fallback descends.
PRECISIONS = ("int8", "fp16", "fp32")
PRECISION_CHOICES = (AUTO,) + PRECISIONS

TENSORRT = "tensorrt"
ONNXRUNTIME = "onnxruntime"
# name -> (module, class), in the order `auto` tries them.
SUPPORTED_BACKENDS = collections.OrderedDict([
    (TENSORRT, ("appliance.backends.trt_backend", "TrtBackend")),
    (ONNXRUNTIME, ("appliance.backends.ort_backend", "OrtBackend")),
])
BACKENDS = tuple(SUPPORTED_BACKENDS)
BACKEND_CHOICES = (AUTO,) + BACKENDS


def load_backend(name):
    """The Backend called `name`; BackendUnavailable if its libraries are missing here."""
    try:
        module_name, class_name = SUPPORTED_BACKENDS[name]
    except KeyError:
        raise UsageError("unknown backend {!r}; choose one of: {}, {}".format(
            name, AUTO, ", ".join(sorted(SUPPORTED_BACKENDS))))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable("backend {!r} is not usable on this host: {}".format(name, exc))
    return getattr(module, class_name)()


def resolve_backend(name):
    """`auto` becomes the first backend that imports here (TensorRT, then ONNX Runtime)."""
    if name != AUTO:
        load_backend(name)
        return name
    reasons = []
    for candidate in BACKENDS:
        try:
            load_backend(candidate)
            return candidate
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable("no inference backend is usable: " + "; ".join(reasons))
