"""An EngineManager from the configuration."""
from appliance.backends import resolve_backend
from appliance.engine.manager import EngineManager
from appliance.manifest import load_model
from appliance.models import load_family
from appliance.paths import default_cache_dir


def manager_for(config, backend=None, cache_dir=None, report=None, cancel=None, heartbeat=None):
    model = load_model()
    settings = load_family(model.family).DEFAULT_SETTINGS._replace(min_score=config.detections.min_score)
    return EngineManager(model, resolve_backend(backend or config.engine.backend),
                         cache_dir or config.engine.cache_dir or default_cache_dir(),
                         workspace_mb=config.engine.workspace_mb, threads=config.engine.threads,
                         settings=settings, report=report, cancel=cancel, heartbeat=heartbeat)
