"""Inference backends, looked up by name and imported only when chosen; and the words that choose them.

The vocabulary of the engine settings lives here, once: the backend names (AUTO and BACKENDS, in the
order `auto` tries them) and the precisions (AUTO and PRECISIONS, fastest kind first). The configuration's
choices, the command line's and the remote `rebuild` command's are these tuples, imported.

Only the chosen backend's module is imported, so `tensorrt` and `pycuda` are never loaded on a host
that runs ONNX Runtime, and ONNX Runtime is never needed on a Jetson running TensorRT. Each module
defines a subclass of appliance.backends.base.Backend. The choice is made once (choose_backend) and the
Backend object is passed along; only the build child, another process, loads one again by name.
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


def choose_backend(name):
    """The Backend that engine.backend (or --backend) `name` means here: that one, or for `auto` the first
    that imports (TensorRT, then ONNX Runtime). BackendUnavailable says why none can be used."""
    if name != AUTO:
        return load_backend(name)
    reasons = []
    for candidate in BACKENDS:
        try:
            return load_backend(candidate)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
    raise BackendUnavailable("no inference backend is usable: " + "; ".join(reasons))


def backend_of(backend):
    """`backend` itself when it is a Backend already (chosen once, passed along); a name is chosen here
    (scripts and tests name one)."""
    return choose_backend(backend) if isinstance(backend, str) else backend


def resolve_backend(name):
    """The name of the backend choose_backend(name) lands on."""
    return choose_backend(name).name
