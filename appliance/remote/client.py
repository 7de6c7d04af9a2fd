"""The operator's side of the command protocol (`facewatch ctl`): connect, sign, send, follow replies.

Replies are matched by the command's id on PREFIX/DEVICE/reply (or PREFIX/+/reply for all devices), so
MQTT 3.1.1 and 5 work alike; a rejection whose id the device could not read is matched by the sha256 of
the payload we published. The reply topics are subscribed, and the broker has confirmed it, before the
command is published: no early reply is missed. What the broker hands us is bounded: with MQTT 5 by the
Maximum Packet Size we connect with, and in memory by the inbox (messages beyond it are counted, not kept).
"""
import collections
import hashlib
import json
import ssl
import threading
import time
import uuid

from appliance.errors import FacewatchError, UsageError
from appliance.mqtt import topics as contract
from appliance.mqtt.link import make_paho_client
from appliance.remote import replies as reading
from appliance.remote.envelope import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, sign

CONNECT_TIMEOUT = 10.0
INBOX_MESSAGES = 1000
INBOX_BYTES = 16 << 20

# A command as published: its id and name, the target, and the sha256 (hex) of the payload's bytes.
Sent = collections.namedtuple("Sent", "id command device sha256")


class Inbox:
    """Messages (topic, payload bytes, retained) waiting to be read: at most max_messages holding at most
    max_bytes of payload; beyond that a message is dropped and counted in `dropped`."""

    def __init__(self, max_messages=INBOX_MESSAGES, max_bytes=INBOX_BYTES):
        self._items = collections.deque()
        self._bytes = 0
        self._limits = (max_messages, max_bytes)
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, topic, payload, retained):
        with self._ready:
            if len(self._items) >= self._limits[0] or self._bytes + len(payload) > self._limits[1]:
                self.dropped += 1
                return
            self._items.append((topic, payload, retained))
            self._bytes += len(payload)
            self._ready.notify()

    def get(self, timeout):
        """The oldest message, or None after `timeout` seconds without one."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            if not self._items:
                return None
            message = self._items.popleft()
            self._bytes -= len(message[1])
            return message


def encode(envelope):
    """The bytes published: compact JSON, UTF-8, non-ASCII characters as themselves (the device's limit is
    on these bytes)."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Controller:
    def __init__(self, host, port, prefix, protocol="5", username="", password=None, tls_ca="", tls_cert="",
                 tls_key="", keepalive=30, on_message=None):
        """on_message(topic, payload bytes, retained) instead of queueing every message in self.inbox."""
        self.prefix = prefix
        self.inbox = Inbox()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._refused = None
        self.connack_properties = None     # the broker's CONNACK properties (MQTT 5), e.g. MaximumPacketSize
        self._client = make_paho_client("facewatch-ctl-" + uuid.uuid4().hex[:12], protocol)
        if username:
            self._client.username_pw_set(username, password.decode("utf-8") if password else None)
        if tls_ca or tls_cert:
            self._client.tls_set(ca_certs=tls_ca or None, certfile=tls_cert or None, keyfile=tls_key or None,
                                 tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        deliver = on_message or self.inbox.put
        self._client.on_message = lambda client, userdata, message: deliver(
            message.topic, bytes(message.payload), bool(message.retain))
        try:
            self._client.connect(host, port, keepalive, properties=connect_properties(protocol))
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
        self.connack_properties = properties
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
        """Sign (when there is a key) and publish a command to DEVICE or all; returns its Sent. UsageError,
        before anything is published, when the payload is over the devices' limit."""
        envelope = {"v": SCHEMA_VERSION, "id": uuid.uuid4().hex, "command": command, "device": device,
                    "ts": int(time.time()), "args": args}
        if key is not None:
            envelope = sign(envelope, key)
        payload = encode(envelope)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise UsageError("the command would be a payload of {} bytes (UTF-8, as sent); a device accepts at "
                             "most {}: the device id is too long".format(len(payload), MAX_PAYLOAD_BYTES))
        sent = Sent(envelope["id"], command, device, hashlib.sha256(payload).hexdigest())
        self.subscribe([contract.answering(self.prefix, device).reply])
        info = self._client.publish(contract.Topics(self.prefix, device).command(command), payload, qos=1)
        info.wait_for_publish(CONNECT_TIMEOUT)
        return sent

    def replies(self, sent, deadline, finished=lambda: False):
        """replies.Reply for the command `sent` as they arrive, until `deadline` (time.monotonic()) or until
        finished() says so. Retained messages on reply topics are old: no reply to this command."""
        while not finished():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = self.inbox.get(min(remaining, 0.5))
            if message is None or message[2]:
                continue
            reply = reading.read_reply(message[0], message[1], self.prefix, sent)
            if reply is not None:
                yield reply

    def follow(self):
        """(topic, payload) of every message on the subscribed topics, until interrupted; (None, count)
        first whenever the inbox dropped messages (count: how many so far)."""
        dropped = 0
        while True:
            message = self.inbox.get(0.5)
            if self.inbox.dropped != dropped:
                dropped = self.inbox.dropped
                yield None, dropped
            if message is not None:
                yield message[0], message[1]

    def close(self):
        self._client.disconnect()
        self._client.loop_stop()


def connect_properties(protocol):
    """MQTT 5: the Maximum Packet Size the broker may send us (it drops larger messages for this client);
    None for 3.1.1, which has no such limit (the broker's own max_packet_size applies)."""
    if protocol != "5":
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    properties = Properties(PacketTypes.CONNECT)
    properties.MaximumPacketSize = reading.MAX_PACKET_BYTES
    return properties
