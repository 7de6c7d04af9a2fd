"""Opening a detector for the shipped model on a chosen backend."""
from appliance.backends import backend_module, resolve_backend
from appliance.detector import Detector
from appliance.errors import UsageError
from appliance.manifest import load_model
from appliance.models import load_family


def open_detector(backend="auto", threads=0, min_score=None, model_name=None):
    """ONNX Runtime runs the shipped ONNX directly; TensorRT goes through the engine cache (built if missing)."""
    if min_score is not None and not 0.0 < min_score < 1.0:
        raise UsageError("--min-score must be between 0 and 1, got {}".format(min_score))
    model = load_model(model_name)
    name = resolve_backend(backend)
    if name != "onnxruntime":
        return _engine_detector(name, threads, min_score)
    settings = load_family(model.family).DEFAULT_SETTINGS
    if min_score is not None:
        settings = settings._replace(min_score=min_score)
    session = backend_module(name).open_session(model.onnx_path, threads)
    return Detector(session, model, settings)


def _engine_detector(backend, threads, min_score):
    from appliance import config as configuration
    from appliance.engine.setup import manager_for
    config = configuration.load()
    config = config._replace(engine=config.engine._replace(threads=threads),
                             detections=config.detections._replace(
                                 min_score=config.detections.min_score if min_score is None else min_score))
    manager = manager_for(config, backend=backend)
    return manager.load(config.engine.precision)[1]
