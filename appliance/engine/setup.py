"""An EngineManager from the configuration, for frames of a given size."""
from appliance.engine.manager import EngineManager
from appliance.manifest import load_model
from appliance.models import load_family
from appliance.engine.shapes import DEFAULT_FRAME_SIZE, network_size


def configured_frame_size(config):
    """The frame size to build for before the camera has said: camera.width x camera.height, else 640x480."""
    camera = config.camera
    return (camera.width, camera.height) if camera.width and camera.height else DEFAULT_FRAME_SIZE


def network_size_for(config, frame_size):
    """(width, height) of the network input for frames of frame_size under this configuration."""
    family = load_family(load_model(verify=False).family)
    return network_size(frame_size[0], frame_size[1], config.engine.input_size, family.STRIDE)


def manager_for(config, backend=None, cache_dir=None, report=None, cancel=None, heartbeat=None, frame_size=None,
                threads=None):
    """backend: the Backend the caller chose once (appliance.backends.choose_backend) and passes along
    (default: engine.backend, chosen here); cache_dir: a folder other than engine.cache_dir (--cache-dir);
    frame_size: (width, height) of the frames to detect in (default: configured_frame_size); threads: the
    backend's threads per session (default: engine.threads)."""
    model = load_model()
    family = load_family(model.family)
    settings = family.DEFAULT_SETTINGS._replace(min_score=config.detections.min_score)
    width, height = frame_size or configured_frame_size(config)
    return EngineManager(model, config.engine.backend if backend is None else backend,
                         cache_dir or config.engine.cache_dir,
                         workspace_mb=config.engine.workspace_mb,
                         threads=config.engine.threads if threads is None else threads,
                         settings=settings, report=report, cancel=cancel, heartbeat=heartbeat,
                         size=network_size(width, height, config.engine.input_size, family.STRIDE))
