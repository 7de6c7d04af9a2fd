"""The engine lifecycle: key -> cache lookup -> build (child) -> store -> acceptance -> load.

Every step is reported through `report(**engine payload fields)`: the daemon publishes it on the
retained `engine` topic, the CLI draws a progress bar. Nothing changes precision silently, and nothing
on disk is trusted: a cached engine that fails to load is discarded and rebuilt once.
"""
import logging
import os
import time
from typing import NamedTuple, Optional

from appliance import files
from appliance.backends import backend_module
from appliance.detector import Detector
from appliance.engine import acceptance, policy
from appliance.engine.builder import BuildCrashed, BuildFailed, run_build
from appliance.engine.key import engine_name, key_inputs
from appliance.engine.store import EngineRejected, EngineStore, remove_path
from appliance.errors import FacewatchError

log = logging.getLogger(__name__)

Engine = NamedTuple("Engine", [
    ("name", str), ("path", str), ("precision", str), ("requested", str),
    ("fallback_reason", Optional[str]), ("sidecar", dict), ("built_now", bool)])

# Free space a build needs beyond the engine itself: ONNX Runtime and TensorRT write temporaries.
BUILD_SPACE_MARGIN = 16 << 20


class EngineFailed(FacewatchError):
    pass


class AcceptanceFailed(Exception):
    pass


class EngineManager:
    def __init__(self, model, backend_name, cache_dir, workspace_mb=256, threads=0, settings=None, report=None,
                 cancel=None, build_timeout=3600.0, heartbeat=None):
        self.model = model
        self.backend_name = backend_name
        self.backend = backend_module(backend_name)
        self.store = EngineStore(cache_dir)
        self.workspace_mb = workspace_mb
        self.threads = threads
        self.settings = settings
        self.cancel = cancel
        self.build_timeout = build_timeout
        self.heartbeat = heartbeat
        self._report = report or (lambda **fields: None)
        self._capabilities = None

    def ensure(self, requested="auto", force=False, strict=False):
        """A verified engine for `requested`, built if missing or invalid; EngineFailed if none can be."""
        capabilities = self._capabilities = self.backend.capabilities(self.model)
        decision = policy.choose(requested, capabilities, strict)
        if decision.fallback_reason:
            log.warning("engine: %s; building %s instead", decision.fallback_reason, decision.precision.upper())
        precision, reason = decision
        with self.store.locked(self.cancel, self._waiting_for_lock(requested, precision)):
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

    def _waiting_for_lock(self, requested, precision):
        """While another process builds in this cache: say so once, then keep systemd's timeout extended."""
        said = []

        def waiting(seconds, holder):
            if not said:
                said.append(holder)
                log.warning("engine: waiting for the engine cache %s: process %s is building in it",
                            self.store.directory, holder)
                self.report(requested, precision, state="building", phase="waiting for process {}".format(holder),
                            progress=0.0)
            if self.heartbeat:
                self.heartbeat(seconds, 0.0)
        return waiting

    def load(self, requested="auto", force=False, strict=False):
        """(Engine, Detector) ready to serve. A cached engine that passes its checks but does not load is
        discarded and rebuilt once; if that one does not load either, EngineFailed."""
        engine = self.ensure(requested, force=force, strict=strict)
        try:
            return engine, self.open_detector(engine)
        except EngineFailed as exc:
            if engine.built_now:
                raise
            log.warning("engine: cached %s does not load (%s); discarding it and building it again", engine.name, exc)
            self.store.discard(engine.name)
        engine = self.ensure(requested, force=True, strict=strict)
        return engine, self.open_detector(engine)

    def open_detector(self, engine):
        return Detector(self._open_session(engine.path), self.model, self.settings)

    def _open_session(self, path):
        shape = [1, 3, self.model.input_height, self.model.input_width]
        try:
            return self.backend.open_engine(path, self.threads, input_shape=shape)
        except Exception as exc:  # whatever the backend library raises for an engine it cannot load
            raise EngineFailed("{} cannot load {}: {}: {}".format(self.backend_name, os.path.basename(path),
                                                                  type(exc).__name__, exc))

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
                return self._go_live(name, inputs, sidecar, requested, reason, built_now=False)
            except EngineRejected as exc:
                log.info("engine: building %s: %s", name, exc)
        sidecar = self._build(name, inputs, precision, requested, reason)
        return self._go_live(name, inputs, sidecar, requested, reason, built_now=True)

    def _key_inputs(self, precision):
        calibration_sha = self.backend.int8_source(self.model)[1] if precision == "int8" else ""
        settings = dict(self.backend.builder_settings(self), precision_policy_version=1)
        return key_inputs(self.model, self.backend.platform(), precision, settings, calibration_sha or "")

    def _build(self, name, inputs, precision, requested, reason):
        workspace = self.workspace_mb
        for attempt in (1, 2):
            self._check_space()
            temp = self.store.temp_path(name)
            job = self._job(precision, temp, workspace)
            self.report(requested, precision, state="building", phase="starting", progress=0.0, key=name,
                        fallback_reason=reason)

            def progress(phase, fraction, eta):
                self.report(requested, precision, state="building", phase=phase, progress=fraction,
                            eta_s=None if eta is None else round(eta, 1), key=name, fallback_reason=reason)
            try:
                seconds = run_build(job, progress, timeout=self.build_timeout, cancel=self.cancel,
                                    heartbeat=self.heartbeat)
            except BuildCrashed as exc:
                remove_path(temp)
                self._check_space()
                if attempt == 2:
                    raise
                workspace = max(16, workspace // 2)
                log.warning("engine: %s; retrying once with half the workspace (%d MiB)", exc, workspace)
                note = "{}; retried with {} MiB workspace".format(exc, workspace)
                reason = note if reason is None else "{}; {}".format(reason, note)
                continue
            except BuildFailed:
                remove_path(temp)
                self._check_space()
                raise
            except BaseException:
                remove_path(temp)
                raise
            record = {"key_inputs": inputs, "built_at": round(time.time(), 3), "build_seconds": round(seconds, 2),
                      "precision": precision, "requested_precision": requested, "fallback_reason": reason,
                      "workspace_mb": workspace}
            sidecar = self._install(name, temp, record)
            self._accept(name, requested, precision, reason)
            return sidecar

    def _install(self, name, temp, record):
        try:
            return self.store.install(name, temp, record)
        except OSError as exc:
            remove_path(temp)
            self.store.discard(name)
            raise BuildFailed("cannot store the engine: {}".format(files.os_reason(self.store.directory, exc)))

    def _check_space(self):
        """BuildFailed naming the disk when the cache has no room for a build."""
        needed = BUILD_SPACE_MARGIN + 4 * os.path.getsize(self.model.onnx_path)
        free = files.free_bytes(self.store.directory)
        if free is not None and free < needed:
            raise BuildFailed("no space left on device: the engine cache {} has {} free, a build needs about {}"
                              .format(self.store.directory, files.human_bytes(free), files.human_bytes(needed)))

    def _accept(self, name, requested, precision, reason):
        self.report(requested, precision, state="building", phase="acceptance", progress=0.95, key=name,
                    fallback_reason=reason)
        try:
            with Detector(self._open_session(self.store.engine_path(name)), self.model) as detector:
                verdict = acceptance.check(detector, self.model.golden)
        except EngineFailed as exc:
            self.store.discard(name)
            raise AcceptanceFailed("acceptance check failed: {}".format(exc))
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
                "timing_cache": os.path.join(self.store.directory, "timing.cache")}

    def _go_live(self, name, inputs, sidecar, requested, reason, built_now):
        self.store.set_active(name)
        fallback = sidecar.get("fallback_reason") if built_now else reason
        engine = Engine(name, self.store.engine_path(name), inputs["precision"], requested, fallback,
                        sidecar, built_now)
        self.report(requested, engine.precision, state="ready", phase="ready", progress=1.0, key=name,
                    built_at=finite_number(sidecar.get("built_at")),
                    build_seconds=finite_number(sidecar.get("build_seconds")), fallback_reason=fallback)
        return engine


def finite_number(value):
    """A sidecar's number as published, or None where the file holds something else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if value == value and abs(value) != float("inf") else None
