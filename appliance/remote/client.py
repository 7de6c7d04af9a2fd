"""The operator's side of the command protocol (`facewatch ctl`): connect, sign, send, follow replies.

Replies are matched by the command's id on PREFIX/DEVICE/reply (or PREFIX/+/reply for all devices), so
MQTT 3.1.1 and 5 work alike. The reply topics are subscribed, and the broker has confirmed it, before the
command is published: no early reply is missed.
"""
import json
import queue
import ssl
import threading
import time
import uuid

from appliance.errors import FacewatchError
from appliance.mqtt import topics as contract
from appliance.mqtt.link import make_paho_client
from appliance.remote.envelope import SCHEMA_VERSION, sign

REPLY_STATES = contract.REPLY_STATES
CONNECT_TIMEOUT = 10.0


class Controller:
    def __init__(self, host, port, prefix, protocol="5", username="", password=None, tls_ca="", tls_cert="",
                 tls_key="", keepalive=30, on_message=None):
        """on_message(topic, payload bytes, retained) instead of queueing every message in self.messages."""
        self.prefix = prefix
        self.messages = queue.Queue()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._refused = None
        self._client = make_paho_client("facewatch-ctl-" + uuid.uuid4().hex[:12], protocol)
        if username:
            self._client.username_pw_set(username, password.decode("utf-8") if password else None)
        if tls_ca or tls_cert:
            self._client.tls_set(ca_certs=tls_ca or None, certfile=tls_cert or None, keyfile=tls_key or None,
                                 tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        deliver = on_message or (lambda *message: self.messages.put(message))
        self._client.on_message = lambda client, userdata, message: deliver(
            message.topic, bytes(message.payload), bool(message.retain))
        try:
            self._client.connect(host, port, keepalive)
        except (OSError, ValueError) as exc:
            raise FacewatchError("cannot reach the MQTT broker at {}:{}: {}".format(
                host, port, getattr(exc, "strerror", None) or exc))
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT):
            self.close()
            raise FacewatchError(self._refused or "the broker at {}:{} did not answer within {:.0f} s".format(
                host, port, CONNECT_TIMEOUT))

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        code = reason.value if hasattr(reason, "value") else int(reason)
        if code == 0:
            self._connected.set()
        else:
            self._refused = "the broker refused the connection: {}".format(reason)
            client.disconnect()

    def subscribe(self, patterns, timeout=CONNECT_TIMEOUT):
        """Subscribe and wait for the broker to confirm."""
        self._subscribed.clear()
        self._client.subscribe([(pattern, 1) for pattern in patterns])
        if not self._subscribed.wait(timeout):
            raise FacewatchError("the broker did not confirm the subscription within {:.0f} s".format(timeout))

    def send(self, command, device, args, key):
        """Sign (when there is a key) and publish a command to DEVICE or all; returns its id."""
        envelope = {"v": SCHEMA_VERSION, "id": uuid.uuid4().hex, "command": command, "device": device,
                    "ts": int(time.time()), "args": args}
        if key is not None:
            envelope = sign(envelope, key)
        self.subscribe(["{}/{}/reply".format(self.prefix, "+" if device == contract.ALL_DEVICES else device)])
        info = self._client.publish("{}/{}/cmd/{}".format(self.prefix, device, command),
                                    json.dumps(envelope, separators=(",", ":")).encode("utf-8"), qos=1)
        info.wait_for_publish(CONNECT_TIMEOUT)
        return envelope["id"]

    def replies(self, command_id, deadline, finished=lambda: False):
        """Reply payloads (dicts) for `command_id` as they arrive, until `deadline` (time.monotonic()) or
        until finished() says so."""
        while not finished():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                topic, payload, _ = self.messages.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            try:
                reply = json.loads(payload.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("id") == command_id and reply.get("state") in REPLY_STATES:
                yield reply

    def follow(self):
        """(topic, payload) of every message on the subscribed topics, until interrupted."""
        while True:
            try:
                topic, payload, _ = self.messages.get(timeout=0.5)
            except queue.Empty:
                continue
            yield topic, payload

    def close(self):
        self._client.disconnect()
        self._client.loop_stop()
