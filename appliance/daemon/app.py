"""The daemon: MQTT link, engine, camera, pipeline, host sensors, telemetry.

start() reads as a table of contents and stop() undoes it in reverse. Every thread runs under one
Supervisor: the first that dies stops the daemon, which publishes `offline` and exits 1 naming the
thread and the cause, so systemd restarts it. A clean stop (SIGTERM) publishes `stopped`.
"""
import logging
import os
import threading
import time

from appliance.config import schema as configuration
from appliance import __version__
from appliance.backends import PRECISION_CHOICES, choose_backend
from appliance.config import validators
from appliance.camera.capture import Camera
from appliance.models.detections import faces_as_json
from appliance.errors import Cancelled, FacewatchError
from appliance.health import open_host_sensors
from appliance.mqtt.homeassistant import Discovery
from appliance.daemon.inference_plan import available_cpus, plan_inference
from appliance.daemon.snapshots import SnapshotFailed, Snapshots
from appliance.mqtt import topics as contract
from appliance.mqtt.link import MqttLink, correlation_properties
from appliance.daemon.pipeline import Pipeline
from appliance.daemon.publish_policy import make_policy
from appliance.daemon.rebuild import Rebuilder, warm_detectors
from appliance.remote.dispatcher import Dispatcher, checked_args
from appliance.remote.envelope import Rejected
from appliance.remote.replay import ReplayGuard
from appliance.daemon.systemd_notify import Notifier
from appliance.daemon.supervisor import Supervisor

log = logging.getLogger(__name__)

# While a first-boot build runs, each heartbeat pushes systemd's start timeout this far ahead.
BUILD_TIMEOUT_EXTENSION = 30.0
THREAD_STOP_TIMEOUT = 5.0


def plural(count, noun):
    return "{} {}{}".format(count, noun, "" if count == 1 else "s")


def duration(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    return "{} min {} s".format(minutes, seconds) if minutes else "{} s".format(seconds)


class DaemonFailed(FacewatchError):
    """A thread of the daemon died; the message names it and its cause."""


class App:
    def __init__(self, config, stop_event=None, notifier=None, listeners=()):
        self.config = config
        self.stop_event = stop_event or threading.Event()
        self.notifier = notifier or Notifier()
        self.listeners = list(listeners)
        self.topics = contract.Topics(config.mqtt.prefix, configuration.device_id(config))
        self.supervisor = Supervisor(self.stop_event)
        self.started_at = time.monotonic()
        self.mqtt = self.camera = self.pipeline = self.host = self.plan = None
        self._command_key = None
        self.detectors = []
        self.engine = self.commands = self.rebuilder = None
        self.frame_size = None
        self.backend = None   # chosen once, in _plan_inference, and passed to every engine manager
        self.engine_state = {}
        self.phase = "starting"
        self._host_error = None
        self._policy = make_policy(config.detections)
        self._seq = 0
        self._faces_seen = 0
        self.snapshots = Snapshots(config.snapshot, self._publish_snapshot)
        self.discovery = None

    def start(self):
        self._connect_mqtt()
        self._listen_for_commands()
        self._start_camera()
        self._learn_frame_size()
        self._plan_inference()
        self._open_engine()
        self._start_pipeline()
        self._open_host_sensors()
        self._announce_to_home_assistant()
        self._announce_ready()

    def stop(self, final_status=contract.STOPPED):
        self.stop_event.set()
        self.notifier.stopping()
        self._close_host_sensors()
        stuck = self._stop_threads()
        self._close_engine(stuck)
        self._disconnect_mqtt(final_status)
        log.info("stopped (%s)", final_status)

    def run(self, until=None):
        """Start, publish telemetry every interval until the stop event (or `until()`), then stop.

        Raises DaemonFailed when a thread died; a stop requested during start-up is a clean stop.
        """
        clean = False
        try:
            try:
                self.start()
                self._serve(until)
            except Cancelled as exc:
                log.info("%s", exc)
                if self.engine_state.get("state") == "building":
                    self._publish_engine_state(state="failed", error="stopped before the build finished")
            except FacewatchError as exc:
                self._report_failure(str(exc))
                raise
            clean = self.supervisor.failure is None
            if not clean:
                self._report_failure(self.supervisor.failure)
        finally:
            self.stop(contract.STOPPED if clean else contract.OFFLINE)
        if self.supervisor.failure:
            raise DaemonFailed(self.supervisor.failure)

    def _report_failure(self, error):
        """Why facewatch stops, where an operator looks: STATUS= and, when the engine never served, the
        retained engine topic (which would otherwise keep its last state)."""
        self.notifier.status("failed: {}".format(error))
        if self.engine_state.get("state") != "ready":
            self._publish_engine_state(state="failed", error=error)

    def _publish_engine_state(self, **fields):
        if self.mqtt:
            self.engine_state = dict(self.engine_state or contract.engine_payload(), phase=self.phase, **fields)
            self.mqtt.publish(self.topics.engine, self.engine_state, qos=1, retain=True)

    def source_exhausted(self):
        """A file source without loop has ended and every frame of it was processed."""
        return self.camera.finished() and not self.camera.has_pending_frame() and self.pipeline.idle.is_set()

    # --- start, in order ---------------------------------------------------------------------------

    def _connect_mqtt(self):
        settings = self.config.mqtt
        password = configuration.secret(settings.password_file, "mqtt.password_file", "mqtt_password")
        # The command key also signs our instance record: a forged one then never makes this device back off.
        self._command_key = configuration.secret(self.config.commands.key_file, "commands.key_file", "command_key")
        self.mqtt = MqttLink(settings, self.topics, password, on_state=self._refresh_status,
                             instance_key=self._command_key)
        self.mqtt.start(self.supervisor)

    def _start_camera(self):
        self.camera = Camera(self.config.camera, self.stop_event, on_state=self._refresh_status)
        self.supervisor.start("camera", self.camera.run, may_end=True)

    def _learn_frame_size(self):
        """The engine is shaped to the camera's frames: their size, if the camera delivers within
        camera.open_timeout; else the configured size (or 640x480), switched hot once frames come."""
        from appliance.engine.setup import configured_frame_size
        self._set_phase("waiting for the camera")
        self.frame_size = self.camera.wait_for_frame_size(self.config.camera.open_timeout)
        if self.frame_size is None:
            self.frame_size = configured_frame_size(self.config)
            log.warning("camera: no frame within %.0f s; building for %dx%d frames for now and switching once "
                        "frames arrive", self.config.camera.open_timeout, *self.frame_size)

    def _plan_inference(self):
        """The backend, how many inference threads, and how many backend threads each."""
        settings = self.config.engine
        backend = self.backend = choose_backend(settings.backend)
        self.plan = plan_inference(settings.workers, settings.threads,
                                   (backend.max_workers, backend.workers_limit_reason), available_cpus())
        log_level = logging.WARNING if self.plan.workers < settings.workers else logging.INFO
        threads = self.plan.threads
        log.log(log_level, "inference: %s on %s, %s (%s)", plural(self.plan.workers, "thread"), backend.name,
                "{} each".format(plural(threads, "backend thread")) if threads else "the backend's own thread count",
                self.plan.reason)

    def _open_engine(self):
        """Build what is missing (first boot), then load and warm up; progress on the engine topic."""
        self._set_phase("checking engine")
        manager = self._manager(self._report_engine, self.frame_size, heartbeat=self._build_heartbeat)
        self.engine, detector = manager.load(self.config.engine.precision)
        self._set_phase("warming up")
        self.detectors = warm_detectors(manager, self.engine, detector, self.plan.workers, self.stop_event)

    def _manager(self, report, frame_size, heartbeat=None):
        from appliance.engine.setup import manager_for
        return manager_for(self.config, backend=self.backend, report=report, cancel=self.stop_event,
                           heartbeat=heartbeat, frame_size=frame_size, threads=self.plan.threads)

    def _start_pipeline(self):
        self.pipeline = Pipeline(self.camera, self.detectors, self._publish_result, self.stop_event,
                                 on_progress=self.notifier.progress, on_frame_size=self._frame_size_seen)
        from appliance.engine.setup import network_size_for
        self.rebuilder = Rebuilder(self._engine_manager, self.pipeline, lambda: self.engine, self._served,
                                   self.config.engine, self.supervisor, self.stop_event, lambda: self.frame_size,
                                   shape_of=lambda frame_size: network_size_for(self.config, frame_size))
        self.pipeline.start(self.supervisor)

    def _listen_for_commands(self):
        """Signed commands on PREFIX/DEVICE/cmd/NAME and PREFIX/all/cmd/NAME, from a table of handlers; from
        the start, so that `status` answers during a long first-boot build."""
        settings = self.config.commands
        key = self._command_key
        state_dir = settings.state_dir
        try:
            os.makedirs(state_dir, exist_ok=True)
        except OSError as exc:
            raise FacewatchError("cannot create the state folder {} for the command replay record: {}; set "
                                 "commands.state_dir".format(state_dir, exc.strerror or exc))
        handlers = {"rebuild": self._rebuild_command, "status": self._status_command,
                    "snapshot": self._snapshot_command}
        self.commands = Dispatcher(self.topics.device, key, settings.allow_unsigned, ReplayGuard(state_dir),
                                   handlers, self._send_reply, self.stop_event, on_state=self._refresh_status)
        self.supervisor.start("commands", self.commands.run)
        self.mqtt.listen(self.commands.submit)

    def _open_host_sensors(self):
        self.host = open_host_sensors(disk_path=self.config.engine.cache_dir)

    def _announce_to_home_assistant(self):
        """Discovery configs when homeassistant.discovery is on; removes earlier ones when it is off."""
        self.discovery = Discovery(self.config.homeassistant, self.topics, __version__,
                                   self.config.commands.state_dir,
                                   lambda topic, payload: self.mqtt.publish(topic, payload, qos=1, retain=True))
        self.discovery.apply(self._host_sample())
        if not self.config.snapshot.enabled:   # no face image of an earlier run stays retained as if current
            self.mqtt.publish(self.topics.snapshot, b"", qos=1, retain=True)

    def _announce_ready(self):
        self.phase = "detecting on {}".format(self.camera.name)
        self.notifier.ready(self._status_line())
        log.info("detecting: camera %s, device %s", self.camera.name, self.topics.device)

    # --- stop, in reverse ----------------------------------------------------------------------------

    def _close_host_sensors(self):
        if self.host:
            try:
                self.host.close()
            except Exception as exc:  # a sensor library failing to close must not stop the shutdown
                log.warning("host sensors: close failed: %s", exc)

    def _stop_threads(self):
        """Wake and join the pipeline and camera threads; the names of any that did not end."""
        if self.camera:
            self.camera.wake()
        pipeline_threads = self.pipeline.threads if self.pipeline else ()
        stuck = self.supervisor.join(pipeline_threads + ("camera", "commands", "rebuild"), THREAD_STOP_TIMEOUT)
        if stuck:
            log.error("thread(s) %s did not stop within %.0f s", ", ".join(stuck), THREAD_STOP_TIMEOUT)
        return stuck

    def _close_engine(self, stuck):
        if self.pipeline:
            self.pipeline.close_detectors(stuck)
        else:
            for detector in self.detectors:
                detector.close()

    def _disconnect_mqtt(self, final_status):
        if self.mqtt:
            self.mqtt.stop(final_status)

    # --- while running -------------------------------------------------------------------------------

    def _serve(self, until):
        """Telemetry every telemetry.interval, a summary line in the log every telemetry.log_interval."""
        interval, log_interval = self.config.telemetry.interval, self.config.telemetry.log_interval
        next_telemetry = time.monotonic() + interval
        next_summary = time.monotonic() + log_interval
        while not self.stop_event.wait(max(0.0, min(next_telemetry, next_summary) - time.monotonic())):
            now = time.monotonic()
            if now >= next_telemetry:
                self.publish_telemetry()
                next_telemetry = max(next_telemetry + interval, now)
            if now >= next_summary:
                log.info("%s", self._summary_line())
                next_summary = max(next_summary + log_interval, now)
            if until and until():
                return

    def _summary_line(self):
        """One line of how it goes, as DeepStream's perf line: fps, latency, faces, camera, broker."""
        stats = self.pipeline.stats()
        total = stats["latency_ms"].get("total", {})
        mqtt = self.mqtt.stats()
        camera = self.camera.stats()
        return ("perf: {inference:.1f} fps (capture {capture:.1f}), capture->publish p50 {p50} ms p99 {p99} ms, "
                "{faces} faces, camera {camera}, broker {broker} (queue {queue}), dropped {dropped}").format(
            inference=stats["fps"]["inference"], capture=stats["fps"]["capture"], p50=total.get("p50", "-"),
            p99=total.get("p99", "-"), faces=self._faces_seen, camera=camera["state"],
            broker="connected" if mqtt["connected"] else "disconnected", queue=mqtt["queue"],
            dropped=sum(stats["dropped_frames"].values()))

    def _set_phase(self, text):
        self.phase = text
        self._refresh_status()

    def _refresh_status(self):
        self.notifier.status(self._status_line())

    def _status_line(self):
        """The phase, then what is wrong with the camera and the broker link, if anything."""
        parts = [self.phase]
        camera = self.camera.problem() if self.camera else ""
        if camera:
            parts.append("camera: " + camera)
        mqtt = self.mqtt.problem() if self.mqtt else ""
        if mqtt:
            parts.append("MQTT: " + mqtt)
        commands = self.commands.problem() if self.commands else ""
        if commands:
            parts.append("commands: " + commands)
        return "; ".join(parts)

    def _report_engine(self, **fields):
        self.engine_state = contract.engine_payload(**fields)
        self.mqtt.publish(self.topics.engine, self.engine_state, qos=1, retain=True)
        if fields.get("state") == "building":
            self._set_phase("building {} engine: {} {:.0f}%".format(
                fields.get("precision"), fields.get("phase"), 100 * (fields.get("progress") or 0)))
        if fields.get("state") == fields.get("phase"):
            log.info("engine: %s", fields.get("state"))
        else:
            log.info("engine: %s: %s %.0f%%", fields.get("state"), fields.get("phase"),
                     100 * (fields.get("progress") or 0))

    def _build_heartbeat(self, elapsed, cpu):
        """Every second of a build whose child lives and works: systemd's start timeout moves on, and
        STATUS= says for how long it has been building (TensorRT before 10.x reports no progress)."""
        self.notifier.extend_timeout(BUILD_TIMEOUT_EXTENSION)
        self.notifier.status("{} (for {}, CPU {:.0f} s)".format(self._status_line(), duration(elapsed), cpu))

    # --- commands ----------------------------------------------------------------------------------------

    def _rebuild_command(self, command):
        args = checked_args(command, {"precision": (str, PRECISION_CHOICES, self.config.engine.precision),
                                      "force": (bool, None, False)})
        if self.rebuilder is None:
            raise Rejected("facewatch is still starting ({}); order a rebuild once it detects".format(self.phase))
        self.rebuilder.start(command, args["precision"], args["force"])

    def _status_command(self, command):
        checked_args(command, {})
        command.reply("done", status=self.status())

    def _snapshot_command(self, command):
        """The latest frame, annotated, on PREFIX/DEVICE/snapshot now (whatever snapshot.enabled says)."""
        checked_args(command, {})
        try:
            size = self.snapshots.take()
        except SnapshotFailed as exc:
            command.reply("failed", ok=False, error=str(exc))
            return
        if size is None:
            command.reply("failed", ok=False, error="no frame has been processed yet")
        else:
            command.reply("done", topic=self.topics.snapshot, bytes=size)

    def status(self):
        """The telemetry message's content once detecting; before that, the phase and the engine's state."""
        if self.pipeline is None:
            return {"phase": self.phase, "engine": self._engine_summary()}
        return dict(self.telemetry(), phase=self.phase)

    def _engine_manager(self, report, frame_size):
        """A manager for a rebuild: its reports go to the engine topic and to the commander."""
        def both(**fields):
            self._report_engine(**fields)
            report(**fields)
        return self._manager(both, frame_size)

    def _frame_size_seen(self, frame_size):
        """On an inference thread, every frame's size: the shape follower switches to the matching engine
        once a new size has held (appliance.daemon.shape_follower)."""
        self.frame_size = frame_size
        self.rebuilder.frame_seen(frame_size)

    def _served(self, engine, error):
        """After a rebuild: `engine` serves; an error (the build failed) goes on the engine topic beside it."""
        self.engine = engine
        self._set_phase("detecting on {}".format(self.camera.name))
        if error:
            width, height = engine.size
            self._publish_engine_state(state="ready", progress=1.0, key=engine.name, precision=engine.precision,
                                       input_shape=[1, 3, height, width], latency_ms=engine.latency_ms,
                                       choice_reason=engine.choice_reason, error=error)

    def _send_reply(self, command_id, name, state, ok, error, fields, properties):
        """On PREFIX/DEVICE/reply, or on the MQTT 5 response topic (with the correlation data) when given."""
        payload = contract.reply_payload(self.topics.device, command_id, name, state, ok, error, **fields)
        topic, extra = self.topics.reply, None
        response = getattr(properties, "ResponseTopic", None) if properties is not None else None
        if response and validators.topic_prefix(response) is None:
            topic = response
            extra = correlation_properties(getattr(properties, "CorrelationData", None))
        self.mqtt.publish(topic, payload, qos=1, properties=extra)

    def _publish_result(self, result):
        self._faces_seen = len(result.detections.boxes)
        self.snapshots.offer(result.frame.image, result.detections)
        for listener in self.listeners:
            listener(result)
        if not self._policy.should_publish(result.detections):
            return
        self._seq += 1
        payload = contract.detections_payload(self._seq, result.frame, self.camera.name,
                                              faces_as_json(result.detections), result.latency * 1000)
        self.mqtt.publish(self.topics.detections, payload, qos=self.config.detections.qos)

    def telemetry(self):
        commands = dict(self.commands.stats(), rebuild_running=self.rebuilder.running if self.rebuilder else None)
        return contract.telemetry_payload(
            uptime=time.monotonic() - self.started_at, pipeline=self.pipeline.stats(),
            camera=self.camera.stats(), engine=self._engine_summary(), mqtt=self.mqtt.stats(),
            host=self._host_sample(), commands=commands, faces=self._faces_seen, snapshot=self.snapshots.stats(),
            homeassistant=self.discovery.stats() if self.discovery else None)

    def _engine_summary(self):
        summary = {k: self.engine_state.get(k) for k in ("state", "backend", "precision", "key", "input_shape",
                                                        "latency_ms", "error")}
        summary["preprocessing"] = self.pipeline.preprocessing if self.pipeline else None
        summary["shape"] = self.rebuilder.follower.stats() if self.rebuilder else None
        if self.plan:
            summary.update(workers=self.plan.workers, threads_per_worker=self.plan.threads,
                           workers_reason=self.plan.reason)
        return summary

    def _host_sample(self):
        """Host readings; a sensor source that fails is reported in the message, not only logged."""
        if not self.host:
            return {"error": "no host sensor source is available"}
        try:
            sample, self._host_error = self.host.sample(), None
            return sample
        except Exception as exc:  # jtop and sysfs raise many kinds; the daemon goes on without them
            message = "{} readings failed: {}: {}".format(self.host.name, type(exc).__name__, exc)
            if message != self._host_error:
                log.warning("host sensors: %s", message)
            self._host_error = message
            return {"source": self.host.name, "error": message}

    def _publish_snapshot(self, jpeg):
        self.mqtt.publish(self.topics.snapshot, jpeg, qos=0, retain=True)

    def publish_telemetry(self):
        self.mqtt.publish(self.topics.telemetry, self.telemetry(), qos=self.config.telemetry.qos)

