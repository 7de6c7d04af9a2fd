"""The engine lifecycle: key -> cache lookup -> build (child) -> store -> acceptance -> load.

Every step is reported through `report(**engine payload fields)`: the daemon publishes it on the
retained `engine` topic, the CLI draws a progress bar. Nothing changes precision silently.
"""
import contextlib
import logging
import os
import time
from typing import NamedTuple, Optional

from appliance.backends import backend_module
from appliance.detector import Detector
from appliance.engine import acceptance, policy
from appliance.engine.builder import BuildCrashed, BuildFailed, run_build
from appliance.engine.key import engine_name, key_inputs
from appliance.engine.store import EngineRejected, EngineStore
from appliance.errors import FacewatchError

log = logging.getLogger(__name__)

Engine = NamedTuple("Engine", [
    ("name", str), ("path", str), ("precision", str), ("requested", str),
    ("fallback_reason", Optional[str]), ("sidecar", dict), ("built_now", bool)])


class EngineFailed(FacewatchError):
    pass


class AcceptanceFailed(Exception):
    pass


class EngineManager:
    def __init__(self, model, backend_name, cache_dir, workspace_mb=256, threads=0, settings=None, report=None):
        self.model = model
        self.backend_name = backend_name
        self.backend = backend_module(backend_name)
        self.store = EngineStore(cache_dir)
        self.workspace_mb = workspace_mb
        self.threads = threads
        self.settings = settings
        self._report = report or (lambda **fields: None)
        self._capabilities = None

    def ensure(self, requested="auto", force=False, strict=False):
        """A verified engine for `requested`, built if missing or invalid; EngineFailed if none can be."""
        capabilities = self._capabilities = self.backend.capabilities(self.model)
        decision = policy.choose(requested, capabilities, strict)
        if decision.fallback_reason:
            log.warning("engine: %s; building %s instead", decision.fallback_reason, decision.precision.upper())
        precision, reason = decision
        with self.store.locked():
            self.store.remove_stale_temps()
            while True:
                try:
                    return self._ensure(precision, requested, reason, force)
                except (BuildFailed, BuildCrashed, AcceptanceFailed) as exc:
                    if precision == "fp32":
                        self.report(requested, precision, state="failed", error=str(exc), fallback_reason=reason)
                        raise EngineFailed("no engine could be built: {}".format(exc))
                    lower = policy.next_precision(precision, capabilities)
                    reason = "{} engine unusable ({}); fell back to {}".format(precision.upper(), exc, lower.upper())
                    log.warning("engine: %s", reason)
                    precision = lower

    def open_detector(self, engine):
        return Detector(self._open_session(engine.path), self.model, self.settings)

    def _open_session(self, path):
        shape = [1, 3, self.model.input_height, self.model.input_width]
        return self.backend.open_engine(path, self.threads, input_shape=shape)

    def report(self, requested, precision, **fields):
        fields.setdefault("backend", self.backend_name)
        self._report(requested_precision=requested, precision=precision, **fields)

    def _ensure(self, precision, requested, reason, force):
        inputs = self._key_inputs(precision)
        name = engine_name(inputs)
        if not force:
            try:
                sidecar = self.store.verified(name, inputs)
                log.info("engine: reusing %s", name)
                return self._go_live(name, sidecar, requested, reason, built_now=False)
            except EngineRejected as exc:
                log.info("engine: building %s: %s", name, exc)
        sidecar = self._build(name, inputs, precision, requested, reason)
        return self._go_live(name, sidecar, requested, reason, built_now=True)

    def _key_inputs(self, precision):
        calibration_sha = self.backend.int8_source(self.model)[1] if precision == "int8" else ""
        settings = dict(self.backend.builder_settings(self), precision_policy_version=1)
        return key_inputs(self.model, self.backend.platform(), precision, settings, calibration_sha or "")

    def _build(self, name, inputs, precision, requested, reason):
        workspace = self.workspace_mb
        for attempt in (1, 2):
            temp = self.store.temp_path(name)
            job = self._job(precision, temp, workspace)
            self.report(requested, precision, state="building", phase="starting", progress=0.0, key=name,
                        fallback_reason=reason)

            def progress(phase, fraction, eta):
                self.report(requested, precision, state="building", phase=phase, progress=fraction,
                            eta_s=None if eta is None else round(eta, 1), key=name, fallback_reason=reason)
            try:
                seconds = run_build(job, progress)
            except BuildCrashed as exc:
                remove_quietly(temp)
                if attempt == 2:
                    raise
                workspace = max(16, workspace // 2)
                log.warning("engine: %s; retrying once with half the workspace (%d MiB)", exc, workspace)
                note = "{}; retried with {} MiB workspace".format(exc, workspace)
                reason = note if reason is None else "{}; {}".format(reason, note)
                continue
            except BuildFailed:
                remove_quietly(temp)
                raise
            record = {"key_inputs": inputs, "built_at": round(time.time(), 3), "build_seconds": round(seconds, 2),
                      "precision": precision, "requested_precision": requested, "fallback_reason": reason,
                      "workspace_mb": workspace}
            sidecar = self.store.install(name, temp, record)
            self._accept(name, sidecar, requested, precision, reason)
            return sidecar

    def _accept(self, name, sidecar, requested, precision, reason):
        self.report(requested, precision, state="building", phase="acceptance", progress=0.95, key=name,
                    fallback_reason=reason)
        with Detector(self._open_session(self.store.engine_path(name)), self.model) as detector:
            verdict = acceptance.check(detector, self.model.golden)
        if not verdict.passed:
            self.store.discard(name)
            raise AcceptanceFailed("acceptance check failed: " + verdict.reason)
        log.info("engine: %s passed its acceptance check: %s", name, verdict.reason)

    def _job(self, precision, output, workspace):
        int8_path = self.backend.int8_source(self.model)[0] if precision == "int8" else None
        return {"backend": self.backend_name, "onnx": self.model.onnx_path, "int8_source": int8_path,
                "int8_onnx": self.model.int8_onnx_path,
                "precision": precision, "output": output, "workspace_mb": workspace,
                "fast_fp16": self._capabilities.fast_fp16,
                "input_name": self.model.input_name,
                "input_shape": [1, 3, self.model.input_height, self.model.input_width],
                "timing_cache": self.store.directory + "/timing.cache"}

    def _go_live(self, name, sidecar, requested, reason, built_now):
        self.store.set_active(name)
        fallback = sidecar.get("fallback_reason") if built_now else reason
        engine = Engine(name, self.store.engine_path(name), sidecar["precision"], requested, fallback,
                        sidecar, built_now)
        self.report(requested, engine.precision, state="ready", phase="ready", progress=1.0, key=name,
                    built_at=sidecar.get("built_at"), build_seconds=sidecar.get("build_seconds"),
                    fallback_reason=fallback)
        return engine


def remove_quietly(path):
    with contextlib.suppress(OSError):
        os.unlink(path)
