"""The daemon: MQTT link, engine, camera, pipeline, telemetry. start() and stop() mirror each other."""
import logging
import threading
import time

from appliance import config as configuration
from appliance.camera import Camera
from appliance.detections import faces_as_json
from appliance.host import open_host_sensors
from appliance.mqtt import topics as contract
from appliance.mqtt.link import MqttLink
from appliance.pipeline import Pipeline
from appliance.publish_policy import make_policy
from appliance.systemd_notify import Notifier

log = logging.getLogger(__name__)


class App:
    def __init__(self, config, stop_event=None, notifier=None, listeners=()):
        self.config = config
        self.stop_event = stop_event or threading.Event()
        self.notifier = notifier or Notifier()
        self.listeners = list(listeners)
        self.topics = contract.Topics(config.mqtt.prefix, configuration.device_id(config))
        self.started_at = time.monotonic()
        self.mqtt = self.detector = self.camera = self.pipeline = self.host = None
        self.engine_state = {}
        self._policy = make_policy(config.detections)
        self._seq = 0

    def start(self):
        self._connect_mqtt()
        self._open_engine()
        self._open_camera()
        self._start_pipeline()
        self._open_host_sensors()
        self._announce_ready()

    def stop(self):
        self.stop_event.set()
        self.notifier.stopping()
        if self.pipeline:
            self.pipeline.stop()
        if self.camera:
            self.camera.stop()
        if self.detector:
            self.detector.close()
        if self.host:
            self.host.close()
        if self.mqtt:
            self.mqtt.stop(contract.STOPPED)
        log.info("stopped")

    def run(self, until=None):
        """Start, publish telemetry every interval until the stop event (or `until()`), then stop."""
        try:
            self.start()
            while not self.stop_event.wait(self.config.telemetry.interval):
                self.publish_telemetry()
                if until and until():
                    break
        finally:
            self.stop()

    def source_exhausted(self):
        """A file source without loop has ended and every frame of it was processed."""
        return self.camera.finished() and not self.camera.has_pending_frame() and self.pipeline.idle.is_set()

    def _connect_mqtt(self):
        settings = self.config.mqtt
        password_path = configuration.secret_path(settings.password_file, "mqtt_password")
        password = configuration.read_secret(password_path) if password_path else None
        self.mqtt = MqttLink(settings, self.topics, password).start()

    def _open_engine(self):
        """Build what is missing (first boot), then load and warm up; progress on the engine topic."""
        from appliance.engine.setup import manager_for
        self.notifier.status("checking engine")
        manager = manager_for(self.config, report=self._report_engine)
        engine = manager.ensure(self.config.engine.precision)
        self.detector = manager.open_detector(engine)
        self.notifier.status("warming up")
        self.detector.detect(_warmup_frame(self.detector))

    def _report_engine(self, **fields):
        self.engine_state = contract.engine_payload(**fields)
        self.mqtt.publish(self.topics.engine, self.engine_state, qos=1, retain=True)
        if fields.get("state") == "building":
            self.notifier.extend_timeout(120)
            self.notifier.status("building {} engine: {} {:.0f}%".format(
                fields.get("precision"), fields.get("phase"), 100 * (fields.get("progress") or 0)))
        log.info("engine: %s %s %s", fields.get("state"), fields.get("phase"), fields.get("progress"))

    def _open_camera(self):
        self.camera = Camera(self.config.camera, self.stop_event).start()

    def _start_pipeline(self):
        self.pipeline = Pipeline(self.camera, self.detector, self._publish_result, self.stop_event,
                                 on_progress=self.notifier.progress).start()

    def _open_host_sensors(self):
        self.host = open_host_sensors()

    def _announce_ready(self):
        self.notifier.ready("detecting on {}".format(self.camera.name))
        log.info("detecting: camera %s, device %s", self.camera.name, self.topics.device)

    def _publish_result(self, result):
        for listener in self.listeners:
            listener(result)
        if not self._policy.should_publish(result.detections):
            return
        self._seq += 1
        payload = contract.detections_payload(self._seq, result.frame, self.camera.name,
                                              faces_as_json(result.detections), result.latency * 1000)
        self.mqtt.publish(self.topics.detections, payload, qos=self.config.detections.qos)

    def telemetry(self):
        engine = {k: self.engine_state.get(k) for k in ("state", "backend", "precision", "key")}
        return contract.telemetry_payload(
            uptime=time.monotonic() - self.started_at, pipeline=self.pipeline.stats(),
            camera=self.camera.stats(), engine=engine, mqtt=self.mqtt.stats(),
            host=self.host.sample() if self.host else {})

    def publish_telemetry(self):
        self.mqtt.publish(self.topics.telemetry, self.telemetry(), qos=self.config.telemetry.qos)


def _warmup_frame(detector):
    import numpy as np
    return np.zeros((detector.model.input_height, detector.model.input_width, 3), np.uint8)
