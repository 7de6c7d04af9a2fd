"""The engine lifecycle: key -> cache lookup -> build (child) -> acceptance -> store -> timing -> load.

Every step is reported through `report(**engine payload fields)`: the daemon publishes it on the
retained `engine` topic, the CLI draws a progress bar. Nothing changes precision silently, and nothing
on disk is trusted: a cached engine that fails to load is discarded and rebuilt once.
"""
import logging
import os
import time
from typing import NamedTuple, Optional

from appliance import files
from appliance.backends import AUTO, backend_of
from appliance.engine.detector import Detector
from appliance.engine import acceptance, policy
from appliance.engine.builder import BuildCrashed, BuildFailed, run_build
from appliance.engine.key import engine_name, key_inputs
from appliance.engine.measure import fastest, latencies_ms
from appliance.engine.store import EngineRejected, EngineStore, remove_path
from appliance.errors import FacewatchError
from appliance.images import read_image
from appliance.engine.shapes import describe

log = logging.getLogger(__name__)

Engine = NamedTuple("Engine", [
    ("name", str), ("path", str), ("precision", str), ("requested", str),
    ("fallback_reason", Optional[str]), ("sidecar", dict), ("built_now", bool),
    ("size", tuple),                    # the network input's (width, height)
    ("latency_ms", Optional[float]),    # measured inference time on this device
    ("choice_reason", str)])

# Free space a build needs beyond the engine itself: ONNX Runtime and TensorRT write temporaries.
BUILD_SPACE_MARGIN = 16 << 20

Candidate = NamedTuple("Candidate", [("name", str), ("inputs", dict), ("sidecar", dict), ("built_now", bool),
                                     ("fallback_reason", Optional[str])])


class EngineFailed(FacewatchError):
    pass


class AcceptanceFailed(Exception):
    pass


class EngineManager:
    def __init__(self, model, backend, cache_dir, workspace_mb=256, threads=0, settings=None, report=None,
                 cancel=None, build_timeout=3600.0, heartbeat=None, size=None):
        """backend: the Backend chosen for this run (appliance.backends.choose_backend), passed along, not
        chosen again (a name, from a script or a test, is chosen here); size: the network input's (width,
        height), by default the manifest's."""
        self.model = model
        self.backend = backend_of(backend)
        self.store = EngineStore(cache_dir)
        self.workspace_mb = workspace_mb
        self.threads = threads
        self.settings = settings
        self.cancel = cancel
        self.build_timeout = build_timeout
        self.heartbeat = heartbeat
        self.size = tuple(size or (model.input_width, model.input_height))
        self._report = report or (lambda **fields: None)
        self._capabilities = None
        self._reference = None
        # Of the lines that say which engine serves and that a cached one is reused: a switch the camera's
        # frame size orders lowers it to DEBUG (the shape follower's one line says it).
        self.log_level = logging.INFO

    def ensure(self, requested=AUTO, force=False, strict=False):
        """A verified engine for `requested`, built if missing or invalid; EngineFailed if none can be.

        `auto` on a backend that measures builds every precision it can and keeps the fastest measured."""
        capabilities = self._capabilities = self.backend.capabilities(self.model)
        decision = policy.choose(requested, capabilities, strict)
        if decision.fallback_reason:
            log.warning("engine: %s; building %s instead", decision.fallback_reason, decision.precision.upper())
        with self.store.locked(self.cancel, self._waiting_for_lock(requested, decision.precision)):
            self.store.remove_stale_temps()
            candidates = policy.buildable(capabilities)
            if requested == AUTO and self.backend.measure_candidates and len(candidates) > 1:
                return self._ensure_fastest(candidates, force)
            candidate = self._ensure_with_fallback(decision.precision, requested, decision.fallback_reason, force)
            return self._go_live(candidate, requested, self._recorded_latency(candidate),
                                 candidate.fallback_reason or decision.choice_reason)

    def cached(self, requested=AUTO):
        """Whether ensure(requested) would find every engine it needs in the cache, by the checks it makes
        (False: it would build, minutes on a Jetson)."""
        capabilities = self.backend.capabilities(self.model)
        try:
            decision = policy.choose(requested, capabilities)
        except FacewatchError:
            return False
        candidates = policy.buildable(capabilities)
        if requested == AUTO and self.backend.measure_candidates and len(candidates) > 1:
            precisions = candidates
        else:
            precisions = [decision.precision]
        for precision in precisions:
            inputs = self._key_inputs(precision)
            try:
                self.store.verified(engine_name(inputs), inputs)
            except EngineRejected:
                return False
        return True

    def _ensure_with_fallback(self, precision, requested, reason, force):
        while True:
            try:
                return self._ensure(precision, requested, reason, force)
            except (BuildFailed, BuildCrashed, AcceptanceFailed) as exc:
                if precision == "fp32":
                    self.report(requested, precision, state="failed", error=str(exc), fallback_reason=reason)
                    raise EngineFailed("no engine could be built: {}".format(exc))
                lower = policy.next_precision(precision, self._capabilities)
                reason = "{} engine unusable ({}); fell back to {}".format(precision.upper(), exc, lower.upper())
                log.warning("engine: %s", reason)
                precision = lower

    def _ensure_fastest(self, precisions, force):
        """Every buildable precision that passes acceptance, timed here in turns; the fastest serves."""
        candidates, failures = {}, []
        for precision in precisions:
            try:
                candidates[precision] = self._ensure(precision, AUTO, None, force)
            except (BuildFailed, BuildCrashed, AcceptanceFailed) as exc:
                log.warning("engine: auto: the %s candidate is out: %s", precision.upper(), exc)
                failures.append("{} out: {}".format(precision.upper(), exc))
        if not candidates:
            self.report(AUTO, precisions[-1], state="failed", error="; ".join(failures))
            raise EngineFailed("no engine could be built: {}".format("; ".join(failures)))
        latencies = self._measured(candidates)
        winner, figures = fastest(latencies)
        reason = "auto: fastest measured here at {}: {}".format(describe(self.size), figures)
        if failures:
            reason += "; " + "; ".join(failures)
        log.log(self.log_level, "engine: %s", reason)
        return self._go_live(candidates[winner], AUTO, latencies[winner], reason)

    def _measured(self, candidates):
        """{precision: ms}: the sidecars' figures, or all of them timed now when any is new or unmeasured.
        A candidate whose engine does not load is discarded (rebuilt when next needed) and left out."""
        recorded = {p: finite_number(c.sidecar.get("latency_ms")) for p, c in candidates.items()}
        if all(ms is not None for ms in recorded.values()) and not any(c.built_now for c in candidates.values()):
            return recorded
        detectors = {}
        try:
            for precision, candidate in candidates.items():
                try:
                    detectors[precision] = self.open_detector_at(self.store.engine_path(candidate.name))
                except EngineFailed as exc:
                    log.warning("engine: auto: the %s candidate is out: %s; discarding it", precision.upper(), exc)
                    self.store.discard(candidate.name)
            if not detectors:
                raise EngineFailed("no candidate engine loads")
            latencies = latencies_ms(detectors, read_image(self.model.golden["image"]))
        finally:
            for detector in detectors.values():
                detector.close()
        for precision, latency in latencies.items():
            self._annotate(candidates[precision].name, latency_ms=latency)
        return latencies

    def _recorded_latency(self, candidate):
        """The sidecar's figure, else measured now; None when the engine does not load (load() decides)."""
        latency = finite_number(candidate.sidecar.get("latency_ms"))
        if latency is not None:
            return latency
        try:
            detector = self.open_detector_at(self.store.engine_path(candidate.name))
        except EngineFailed:
            return None
        with detector:
            latency = latencies_ms({"engine": detector}, read_image(self.model.golden["image"]))["engine"]
        self._annotate(candidate.name, latency_ms=latency)
        return latency

    def _annotate(self, name, **fields):
        """Figures measured after the build, into the sidecar; a disk that refuses only costs the record."""
        try:
            self.store.annotate(name, fields)
        except OSError as exc:
            log.warning("engine: cannot record %s in the sidecar of %s: %s", ", ".join(fields), name,
                        files.os_reason(self.store.sidecar_path(name), exc))

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

    def load(self, requested=AUTO, force=False, strict=False):
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
        return Detector(self._open_session(engine.path), self.model, self.settings, self.size)

    def open_detector_at(self, path):
        """A detector on the engine file at `path` with the family's default settings (checks and timing)."""
        return Detector(self._open_session(path), self.model, size=self.size)

    def _open_session(self, path):
        width, height = self.size
        try:
            return self.backend.open_engine(path, self.threads, input_shape=[1, 3, height, width])
        except Exception as exc:  # whatever the backend library raises for an engine it cannot load
            raise EngineFailed("{} cannot load {}: {}: {}".format(self.backend.name, os.path.basename(path),
                                                                  type(exc).__name__, exc))

    def report(self, requested, precision, **fields):
        fields.setdefault("backend", self.backend.name)
        fields.setdefault("input_shape", [1, 3, self.size[1], self.size[0]])
        self._report(requested_precision=requested, precision=precision, **fields)

    def _ensure(self, precision, requested, reason, force):
        """The Candidate for `precision`: the cached engine if it checks out, else a new build."""
        inputs = self._key_inputs(precision)
        name = engine_name(inputs)
        if not force:
            try:
                sidecar = self.store.verified(name, inputs)
                log.log(self.log_level, "engine: reusing %s", name)
                return Candidate(name, inputs, sidecar, False, reason)
            except EngineRejected as exc:
                log.info("engine: building %s: %s", name, exc)
        sidecar = self._build(name, inputs, precision, requested, reason)
        return Candidate(name, inputs, sidecar, True, sidecar.get("fallback_reason"))

    def _key_inputs(self, precision):
        calibration_sha = self.backend.int8_source(self.model).sha256 if precision == "int8" else ""
        settings = dict(self.backend.builder_settings(self.workspace_mb), precision_policy_version=1)
        return key_inputs(self.model, self.backend.platform(), precision, settings, calibration_sha or "", self.size)

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
                verdict = self._accept(temp, name, requested, precision, reason)
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
                      "workspace_mb": workspace, "acceptance": verdict.reason}
            return self._install(name, temp, record)

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

    def _accept(self, path, name, requested, precision, reason):
        """The verdict on the built engine at `path` (before it is installed); AcceptanceFailed if it fails."""
        self.report(requested, precision, state="building", phase="acceptance", progress=0.95, key=name,
                    fallback_reason=reason)
        if self._reference is None:
            self._reference = acceptance.reference_for(self.model, self.size, backend=self.backend)
        try:
            with self.open_detector_at(path) as detector:
                verdict = acceptance.check(detector, self.model.golden, self._reference)
        except EngineFailed as exc:
            raise AcceptanceFailed("acceptance check failed: {}".format(exc))
        if not verdict.passed:
            raise AcceptanceFailed("acceptance check failed: " + verdict.reason)
        log.info("engine: %s passed its acceptance check: %s", name, verdict.reason)
        return verdict

    def _job(self, precision, output, workspace):
        source = self.backend.int8_source(self.model) if precision == "int8" else None
        width, height = self.size
        job = {"backend": self.backend.name, "onnx": self.model.onnx_path,
               "int8_source": source.path if source else None, "int8_onnx": self.model.int8_onnx_path,
               "precision": precision, "output": output, "workspace_mb": workspace,
               "fast_fp16": self._capabilities.fast_fp16, "input_name": self.model.input_name,
               "input_shape": [1, 3, height, width],
               "timing_cache": os.path.join(self.store.directory, "timing.cache")}
        if source and source.table:
            job["dynamic_ranges"] = read_ranges(source.path)
        return job

    def _go_live(self, candidate, requested, latency, choice_reason):
        engine = Engine(candidate.name, self.store.engine_path(candidate.name), candidate.inputs["precision"],
                        requested, candidate.fallback_reason, candidate.sidecar, candidate.built_now, self.size,
                        latency, choice_reason)
        return self.announce(engine)

    def announce(self, engine):
        """`engine` (of this manager's shape) serves from now on: recorded as active, logged and reported."""
        self.store.set_active(engine.name, engine.choice_reason)
        sidecar, latency = engine.sidecar, engine.latency_ms
        log.log(self.log_level, "engine: %s: %s at %s, %s ms measured; %s", engine.name, engine.precision.upper(),
                describe(self.size), "?" if latency is None else "{:.2f}".format(latency), engine.choice_reason)
        self.report(engine.requested, engine.precision, state="ready", phase="ready", progress=1.0, key=engine.name,
                    built_at=finite_number(sidecar.get("built_at")),
                    build_seconds=finite_number(sidecar.get("build_seconds")), fallback_reason=engine.fallback_reason,
                    latency_ms=latency, choice_reason=engine.choice_reason)
        return engine


def read_ranges(path):
    """{tensor: amax} from a TensorRT calibration table; BuildFailed (INT8 falls back) if it is damaged."""
    from appliance.calibration.cache_format import CalibrationTableError, read_table
    try:
        return read_table(path).amax
    except (CalibrationTableError, OSError) as exc:
        raise BuildFailed("the calibration table {} cannot be used: {}".format(path, exc))


def finite_number(value):
    """A sidecar's number as published, or None where the file holds something else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if value == value and abs(value) != float("inf") else None
