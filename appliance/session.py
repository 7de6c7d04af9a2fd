"""Opening a detector for the shipped model on a chosen backend."""
from appliance.backends import backend_module, resolve_backend
from appliance.detector import Detector
from appliance.errors import UsageError
from appliance.manifest import load_model
from appliance.models import load_family


def open_detector(backend="auto", threads=0, min_score=None, model_name=None):
    model = load_model(model_name)
    name = resolve_backend(backend)
    if name != "onnxruntime":
        raise UsageError("backend {!r} needs a built engine; use `facewatch engines build` first".format(name))
    settings = load_family(model.family).DEFAULT_SETTINGS
    if min_score is not None:
        if not 0.0 < min_score < 1.0:
            raise UsageError("--min-score must be between 0 and 1, got {}".format(min_score))
        settings = settings._replace(min_score=min_score)
    session = backend_module(name).open_session(model.onnx_path, threads)
    return Detector(session, model, settings)
