"""Opening a detector for the shipped model on a chosen backend, for one-shot detection on images of any
aspect (a square network input, letterboxed)."""
from appliance.backends import AUTO, ONNXRUNTIME, choose_backend
from appliance.engine.detector import Detector
from appliance.errors import UsageError
from appliance.manifest import load_model
from appliance.models import load_family


def open_detector(backend=AUTO, threads=0, min_score=None, model_name=None):
    """ONNX Runtime runs the shipped ONNX directly; TensorRT goes through the engine cache (built if missing)."""
    if min_score is not None and not 0.0 < min_score < 1.0:
        raise UsageError("--min-score must be between 0 and 1, got {}".format(min_score))
    from appliance.config import schema as configuration
    model = load_model(model_name)
    chosen = choose_backend(backend)
    config = configuration.load()
    if chosen.name != ONNXRUNTIME:
        return _engine_detector(config, chosen, threads, min_score)
    settings = load_family(model.family).DEFAULT_SETTINGS
    if min_score is not None:
        settings = settings._replace(min_score=min_score)
    session = chosen.open_engine(model.onnx_path, threads)
    side = config.engine.input_size
    return Detector(session, model, settings, (side, side))


def _engine_detector(config, backend, threads, min_score):
    from appliance.engine.setup import manager_for
    config = config._replace(engine=config.engine._replace(threads=threads),
                             detections=config.detections._replace(
                                 min_score=config.detections.min_score if min_score is None else min_score))
    side = config.engine.input_size  # a square engine: images of every aspect share it
    manager = manager_for(config, backend=backend, frame_size=(side, side))
    return manager.load(config.engine.precision)[1]
