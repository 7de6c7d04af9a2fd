"""The broker connection, over paho-mqtt 1.6 or 2.x.

Retained last will `offline`; `online` published and commands re-subscribed on every connect; capped
exponential backoff (paho's own, in its network thread); no more retries once the broker rejects the
credentials; a bounded outgoing queue whose overflow is counted, never blocking the caller.
"""
import logging
import ssl
import threading

import paho.mqtt.client as paho

from appliance.mqtt import topics as contract

log = logging.getLogger(__name__)

# CONNACK codes that mean "your credentials are wrong": MQTT 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87).
CREDENTIAL_FAILURES = {4, 5, 134, 135}
PAHO_2 = hasattr(paho, "CallbackAPIVersion")


def make_paho_client(client_id, protocol="3.1.1"):
    """A paho Client with version-2 callbacks on paho 2.x, the only kind on 1.6."""
    kwargs = {"client_id": client_id, "protocol": paho.MQTTv5 if protocol == "5" else paho.MQTTv311}
    if protocol != "5":
        kwargs["clean_session"] = True
    if PAHO_2:
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    return paho.Client(**kwargs)


def reason_value(reason):
    return reason.value if hasattr(reason, "value") else int(reason)


class MqttLink:
    def __init__(self, settings, topics, password=None, on_command=None):
        self.settings = settings
        self.topics = topics
        self._on_command = on_command
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.connects = 0
        self.dropped = 0
        self.published = 0
        self.rejected_credentials = False
        self.last_error = ""
        self._retained = {}
        self._client = self._make_client(password)

    def _make_client(self, password):
        client = make_paho_client("facewatch-" + self.topics.device, self.settings.protocol)
        if self.settings.username:
            client.username_pw_set(self.settings.username, password.decode("utf-8") if password else None)
        if self.settings.tls_ca or self.settings.tls_cert:
            client.tls_set(ca_certs=self.settings.tls_ca or None, certfile=self.settings.tls_cert or None,
                           keyfile=self.settings.tls_key or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.topics.status, contract.OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(max(1, int(self.settings.reconnect_min)), max(1, int(self.settings.reconnect_max)))
        client.max_queued_messages_set(self.settings.queue_size)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self):
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()
        return self

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a message; False (and counted) if the queue is full or the link is down for QoS 0."""
        data = payload if isinstance(payload, (bytes, str)) else contract.encode(payload)
        if retain:
            with self._lock:
                self._retained[topic] = (data, qos)
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        with self._lock:
            if info.rc == paho.MQTT_ERR_SUCCESS:
                self.published += 1
                return True
            self.dropped += 1
        return False

    def stop(self, final_status=contract.STOPPED, timeout=3.0):
        """Publish the final status (retained), flush, disconnect cleanly."""
        if self.connected.is_set():
            info = self._client.publish(self.topics.status, final_status, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:  # paho 2.x raises when not connected
                log.warning("mqtt: %s not delivered: %s", final_status, exc)
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self):
        with self._lock:
            queued = len(getattr(self._client, "_out_messages", ()))
            return {"connected": self.connected.is_set(), "connects": self.connects,
                    "reconnects": max(0, self.connects - 1), "published": self.published,
                    "dropped": self.dropped, "queue": queued, "error": self.last_error}

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        code = reason_value(reason)
        if code != 0:
            self.last_error = "broker refused the connection: {}".format(reason)
            if code in CREDENTIAL_FAILURES:
                self.rejected_credentials = True
                log.error("mqtt: %s:%s rejected the credentials (%s); not retrying. Fix mqtt.username / "
                          "mqtt.password_file and restart.", self.settings.host, self.settings.port, reason)
                client.disconnect()
            else:
                log.warning("mqtt: %s", self.last_error)
            return
        self.connects += 1
        self.last_error = ""
        client.publish(self.topics.status, contract.ONLINE, qos=1, retain=True)
        with self._lock:
            retained = list(self._retained.items())
        for topic, (data, qos) in retained:
            if topic != self.topics.status:
                client.publish(topic, data, qos=qos, retain=True)
        if self._on_command:
            client.subscribe([(pattern, 1) for pattern in self.topics.commands])
        self.connected.set()
        log.info("mqtt: connected to %s:%s", self.settings.host, self.settings.port)

    def _on_disconnect(self, client, userdata, *args):
        reason = args[1] if PAHO_2 else args[0]
        self.connected.clear()
        if reason_value(reason) != 0:
            self.last_error = "connection lost: {}".format(reason)
            log.warning("mqtt: %s; reconnecting with backoff", self.last_error)

    def _on_message(self, client, userdata, message):
        name = self.topics.command_name(message.topic)
        if name is not None and self._on_command:
            self._on_command(name, message.payload, getattr(message, "properties", None))
