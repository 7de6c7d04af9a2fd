"""The broker connection, over paho-mqtt 1.6 or 2.x.

One thread (supervised by the daemon) owns the paho client and is the only one that calls it: it uses
paho's public external-loop API (socket, want_write, loop_read/write/misc) and a wake-up pipe, so other
threads only append to our own bounded outbox. That thread:
- connects, and reconnects with capped exponential backoff, logging every failed attempt with its cause;
- publishes `online` (retained) and re-publishes retained state and re-subscribes on every connect; the
  last will is a retained `offline`;
- stops retrying once the broker rejects the credentials, and says so (log, STATUS=, telemetry);
- publishes a retained `instance` record (a random id, host, pid) and reads it back on every reconnect:
  a record not its own, which appeared after its own was acknowledged, proves that a second facewatch
  publishes with the same device_id (each takes the connection from the other); that is reported
  plainly, naming the other's host and pid;
- reports a connection the broker closes before answering CONNECT, and (MQTT 5, paho 2) messages the
  broker refuses (an ACL), which are counted as dropped, not as published.

Counting (telemetry `mqtt`): a message is `dropped` only when it is really lost: QoS 0 while the link
is down, anything beyond `queue_size` outstanding messages, a QoS 0 message paho discarded when the
connection broke. A QoS 1 message published while the link is down waits (bounded) and is delivered
after the reconnect; paho re-sends any QoS 1 message the broker had not acknowledged.
"""
import collections
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
import uuid

import paho.mqtt.client as paho

from appliance import __version__
from appliance.mqtt import topics as contract

log = logging.getLogger(__name__)

# CONNACK codes that mean "your credentials are wrong": MQTT 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87).
CREDENTIAL_FAILURES = {4, 5, 134, 135}
SESSION_TAKEN_OVER = 142
PAHO_2 = hasattr(paho, "CallbackAPIVersion")
TICK = 1.0                  # loop_misc (keepalive) at least this often
CONNACK_TIMEOUT = 10.0      # a broker that accepts TCP but never answers CONNECT
STABLE_CONNECTION = 10.0    # backoff restarts only after a connection lasted this long
STOP_FLUSH_TIMEOUT = 3.0
# Why a message was dropped (telemetry mqtt.dropped_by_cause).
DISCONNECTED, QUEUE_FULL, CONNECTION_LOST, REFUSED_BY_CLIENT, REFUSED_BY_BROKER = (
    "disconnected", "queue_full", "connection_lost", "refused_by_client", "refused_by_broker")


def make_paho_client(client_id, protocol="3.1.1"):
    """A paho Client with version-2 callbacks on paho 2.x, the only kind on 1.6."""
    kwargs = {"client_id": client_id, "protocol": paho.MQTTv5 if protocol == "5" else paho.MQTTv311}
    if protocol != "5":
        kwargs["clean_session"] = True
    if PAHO_2:
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    return paho.Client(**kwargs)


def reason_value(reason):
    """The number of a paho reason code, whatever paho version and protocol produced it."""
    return reason.value if hasattr(reason, "value") else int(reason)


OutgoingMessage = collections.namedtuple("OutgoingMessage", "topic data qos retain properties")


class MqttLink:
    def __init__(self, settings, topics, password=None, on_state=None):
        self.settings = settings
        self.topics = topics
        self._on_command = None
        self._subscribe_wanted = False
        self._on_state = on_state or (lambda: None)
        self._lock = threading.Lock()
        self._outbox = collections.deque()
        self._pending = {}          # mid -> qos, handed to paho and not yet confirmed
        self._inline_confirmed = set()
        self._retained = {}
        self._wake_read, self._wake_write = os.pipe()
        for fd in (self._wake_read, self._wake_write):
            os.set_blocking(fd, False)
        self._stopping = threading.Event()
        self._final_status = contract.STOPPED
        self.connected = threading.Event()
        self.connects = 0
        self.published = 0
        self.dropped = collections.Counter()
        self.rejected_credentials = False
        self._problem = "connecting to {}:{}".format(settings.host, settings.port)
        self._connected_at = None
        self._attempt_reported = False
        self._takeover = ""
        self._broker_refusal = ""
        self._instance = contract.instance_payload(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time(),
                                                   __version__)
        self._instance_mid = None
        self._instance_acknowledged = False   # our record is retained at the broker
        self._instance_armed = False          # ...and was before this connection: a foreign one is now evidence
        self._client = self._make_client(password)

    def _make_client(self, password):
        client = make_paho_client("facewatch-" + self.topics.device, self.settings.protocol)
        if self.settings.username:
            client.username_pw_set(self.settings.username, password.decode("utf-8") if password else None)
        if self.settings.tls_ca or self.settings.tls_cert:
            client.tls_set(ca_certs=self.settings.tls_ca or None, certfile=self.settings.tls_cert or None,
                           keyfile=self.settings.tls_key or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(self.topics.status, contract.OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        return client

    # --- any thread ----------------------------------------------------------------------------------

    def start(self, supervisor):
        self._worker = supervisor.start("mqtt", self._run)
        return self

    def listen(self, on_command):
        """Subscribe to this device's and every device's command topics (now, and on every connect);
        on_command(target, name, payload, properties) is called on the network thread, target being the
        device id or "all"."""
        self._on_command = on_command
        self._subscribe_wanted = True
        self._wake()

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Queue a message for the network thread; False (and counted as dropped) if it cannot be sent.
        `properties` (paho Properties) go out only on an MQTT 5 connection."""
        data = payload if isinstance(payload, (bytes, str)) else contract.encode(payload)
        with self._lock:
            if retain:
                self._retained[topic] = (data, qos)
            if qos == 0 and not self.connected.is_set():
                self.dropped[DISCONNECTED] += 1
                return False
            if len(self._outbox) + len(self._pending) >= self.settings.queue_size:
                self.dropped[QUEUE_FULL] += 1
                return False
            self._outbox.append(OutgoingMessage(topic, data, qos, retain, properties))
        self._wake()
        return True

    def stop(self, final_status=contract.STOPPED, timeout=STOP_FLUSH_TIMEOUT + 2.0):
        """Publish the final status (retained) if connected, flush, disconnect; the network thread ends."""
        self._final_status = final_status
        self._stopping.set()
        self._wake()
        if self._worker is None or self._worker.join(timeout):
            for fd in (self._wake_read, self._wake_write):
                os.close(fd)

    def problem(self):
        """What is wrong with the link, in words, or '' when all is well.

        A second instance's report outlives the connections in between, until one lasts STABLE_CONNECTION.
        """
        if self._takeover and self.connected.is_set() and self._connected_at and \
                time.monotonic() - self._connected_at >= STABLE_CONNECTION:
            self._takeover = ""
        if self._takeover:
            return self._takeover
        if not self.connected.is_set():
            return self._problem
        return self._broker_refusal

    def stats(self):
        with self._lock:
            return {"connected": self.connected.is_set(), "connects": self.connects,
                    "reconnects": max(0, self.connects - 1), "published": self.published,
                    "dropped": sum(self.dropped.values()), "dropped_by_cause": dict(self.dropped),
                    "queue": len(self._outbox) + len(self._pending), "queue_size": self.settings.queue_size,
                    "error": self.problem()}

    def _wake(self):
        try:
            os.write(self._wake_write, b"x")
        except OSError:  # closed after stop, or the pipe is full: the loop is awake either way
            pass

    _worker = None

    # --- the network thread -----------------------------------------------------------------------------

    def _run(self):
        delay = self.settings.reconnect_min
        while not self._stopping.is_set():
            if self.rejected_credentials:
                self._wait(None)
                continue
            if not self._connect(delay):
                self._wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                continue
            self._serve_connection()
            if self._connected_at and time.monotonic() - self._connected_at >= STABLE_CONNECTION:
                delay = self.settings.reconnect_min
            elif not self._stopping.is_set():
                self._wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
        self._finish()

    def _connect(self, delay):
        """Open the TCP (and TLS) connection and send CONNECT; False, logged with the cause, if it fails."""
        self._connected_at = None
        self._attempt_reported = False
        try:
            self._client.reconnect()
            return True
        except (OSError, ValueError) as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            self._set_problem("cannot connect to {}:{}: {}".format(self.settings.host, self.settings.port,
                                                                   describe_error(exc)))
            log.warning("mqtt: %s; retrying in %.1f s", self._problem, delay)
            return False

    def _serve_connection(self):
        """Run the open connection until it ends or facewatch stops."""
        sent_at = time.monotonic()
        while not self._stopping.is_set():
            sock = self._client.socket()
            if sock is None:
                return
            if not self.connected.is_set() and time.monotonic() - sent_at > CONNACK_TIMEOUT:
                self._set_problem("{}:{} accepted the connection but did not answer CONNECT within {:.0f} s".format(
                    self.settings.host, self.settings.port, CONNACK_TIMEOUT))
                log.warning("mqtt: %s", self._problem)
                self._client.disconnect()
                return
            if self.connected.is_set():
                if self._subscribe_wanted:
                    self._subscribe_commands(self._client)
                self._drain_outbox()
            self._pump(sock, TICK)

    def _pump(self, sock, timeout):
        """One round of network I/O: wait for the socket or the wake-up pipe, then read, write, keepalive."""
        pending = getattr(sock, "pending", lambda: 0)()
        writers = [sock] if self._client.want_write() else []
        try:
            readable, writable, _ = select.select([sock, self._wake_read], writers, [], 0.0 if pending else timeout)
        except (OSError, ValueError):  # the socket was closed under us: the next round reconnects
            return
        if self._wake_read in readable:
            os.read(self._wake_read, 4096)
        if sock in readable or pending:
            self._client.loop_read()
        if sock in writable and self._client.socket() is not None:
            self._client.loop_write()
        self._client.loop_misc()

    def _drain_outbox(self):
        while True:
            with self._lock:
                if not self._outbox:
                    return
                message = self._outbox.popleft()
            self._send(message)

    def _send(self, message):
        """Hand one message to paho and track it until it is confirmed; returns its mid (None if dropped)."""
        self._inline_confirmed.clear()
        extra = {"properties": message.properties} if message.properties and self.settings.protocol == "5" else {}
        info = self._client.publish(message.topic, message.data, qos=message.qos, retain=message.retain, **extra)
        with self._lock:
            if info.rc == paho.MQTT_ERR_SUCCESS or (message.qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN):
                if info.mid in self._inline_confirmed:   # on_publish ran inside publish()
                    self.published += 1
                else:
                    self._pending[info.mid] = (message.qos, message.topic)
                return info.mid
            self.dropped[DISCONNECTED if info.rc == paho.MQTT_ERR_NO_CONN else REFUSED_BY_CLIENT] += 1
            return None

    def _wait(self, seconds):
        """Sleep until `seconds` pass or facewatch stops."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            try:
                readable, _, _ = select.select([self._wake_read], [], [], remaining)
            except (OSError, ValueError):
                return
            if readable:
                os.read(self._wake_read, 4096)

    def _finish(self):
        """Final status (retained), flushed within STOP_FLUSH_TIMEOUT, then a clean DISCONNECT."""
        if self.connected.is_set():
            self._drain_outbox()
            info = self._client.publish(self.topics.status, self._final_status, qos=1, retain=True)
            deadline = time.monotonic() + STOP_FLUSH_TIMEOUT
            while self._client.socket() is not None and time.monotonic() < deadline and not confirmed(info):
                self._pump(self._client.socket(), 0.1)
            if not confirmed(info):
                log.warning("mqtt: %r not acknowledged by the broker within %.0f s", self._final_status,
                            STOP_FLUSH_TIMEOUT)
        self._client.disconnect()
        if self._client.socket() is not None:
            self._client.loop_write()

    # --- paho callbacks (on the network thread) ------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        code = reason_value(reason)
        if code != 0:
            self._refused(client, code, reason)
            return
        self.connects += 1
        self._connected_at = time.monotonic()
        self._instance_armed, self._instance_acknowledged = self._instance_acknowledged, False
        client.subscribe(self.topics.instance, qos=1)
        self._instance_mid = self._send(OutgoingMessage(self.topics.instance, contract.encode(self._instance), 1,
                                                        True, None))
        self._send(OutgoingMessage(self.topics.status, contract.ONLINE, 1, True, None))
        with self._lock:
            retained = list(self._retained.items())
        for topic, (data, qos) in retained:
            if topic != self.topics.status:
                self._send(OutgoingMessage(topic, data, qos, True, None))
        if self._on_command:
            self._subscribe_commands(client)
        self.connected.set()
        log.info("mqtt: connected to %s:%s", self.settings.host, self.settings.port)
        self._on_state()

    def _refused(self, client, code, reason):
        self._attempt_reported = True
        if code in CREDENTIAL_FAILURES:
            self.rejected_credentials = True
            self._set_problem("the broker {}:{} rejected the credentials ({}); not retrying. Fix mqtt.username / "
                              "mqtt.password_file and restart facewatch".format(self.settings.host,
                                                                               self.settings.port, reason))
            log.error("mqtt: %s", self._problem)
            client.disconnect()
        else:
            self._set_problem("the broker {}:{} refused the connection: {}".format(
                self.settings.host, self.settings.port, reason))
            log.warning("mqtt: %s; retrying with backoff", self._problem)

    def _on_disconnect(self, client, userdata, *args):
        reason = args[1] if PAHO_2 else args[0]
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._forget_unsent_qos0()
        if self._stopping.is_set():
            return
        if not was_connected:
            if not self._attempt_reported:
                self._attempt_reported = True
                self._set_problem("{}:{} closed the connection before answering CONNECT ({}): a TLS listener reached "
                                  "without TLS, its connection limit, or a client id or topic it refuses; see the "
                                  "broker's log".format(self.settings.host, self.settings.port, reason))
                log.warning("mqtt: %s", self._problem)
            return
        self._set_problem("connection to {}:{} lost ({}); reconnecting".format(
            self.settings.host, self.settings.port, reason))
        log.warning("mqtt: %s", self._problem)
        if reason_value(reason) == SESSION_TAKEN_OVER:
            self._second_instance("the broker says another client took over the session of client id "
                                  "'facewatch-{}'".format(self.topics.device))

    def _second_instance(self, evidence):
        self._takeover = ("another facewatch publishes as device_id {!r}: {}; each takes the connection from the "
                          "other. Give each device its own mqtt.device_id".format(self.topics.device, evidence))
        self._set_problem(self._takeover)
        log.error("mqtt: %s", self._takeover)

    def _forget_unsent_qos0(self):
        """paho discards QoS 0 packets not yet written when the connection breaks: they are lost."""
        with self._lock:
            lost = [mid for mid, (qos, _) in self._pending.items() if qos == 0]
            for mid in lost:
                del self._pending[mid]
            if lost:
                self.dropped[CONNECTION_LOST] += len(lost)

    def _on_publish(self, client, userdata, mid, *rest):
        """rest: (reason code, properties) with paho 2; a failure code (MQTT 5) is the broker refusing."""
        refused = bool(rest) and getattr(rest[0], "is_failure", False)
        with self._lock:
            pending = self._pending.pop(mid, None)
            if pending is None:
                self._inline_confirmed.add(mid)
                return
            if refused:
                self.dropped[REFUSED_BY_BROKER] += 1
            else:
                self.published += 1
        if refused:
            self._refused_by_broker(pending[1], rest[0])
        elif mid == self._instance_mid:
            self._instance_acknowledged = True
        elif self._broker_refusal and pending[1] in self._broker_refusal:
            self._broker_refusal = ""

    def _refused_by_broker(self, topic, reason):
        text = ("the broker refuses messages on {} ({}): check its ACL (with examples/mosquitto/acl, mqtt.username "
                "must equal the device_id {!r})".format(topic, reason, self.topics.device))
        if text != self._broker_refusal:
            self._broker_refusal = text
            log.error("mqtt: %s", text)
            self._on_state()

    def _check_instance(self, payload):
        """A record not ours, present since ours was acknowledged: another live process publishes as us."""
        try:
            other = json.loads(payload.decode("utf-8"))
        except ValueError:
            return
        if not isinstance(other, dict) or other.get("instance") in (None, self._instance["instance"]):
            return
        if self._instance_armed:
            self._second_instance("the process {} on host {} (started {}, facewatch {})".format(
                shown(other.get("pid")), shown(other.get("host")), local_time(other.get("started")),
                shown(other.get("version"))))

    def _subscribe_commands(self, client):
        self._subscribe_wanted = False
        client.subscribe([(pattern, 1) for pattern in self.topics.commands])

    def _on_message(self, client, userdata, message):
        if message.topic == self.topics.instance:
            self._check_instance(message.payload)
            return
        target = self.topics.command_target(message.topic)
        if target is not None and self._on_command:
            self._on_command(target[0], target[1], message.payload, getattr(message, "properties", None))

    def _set_problem(self, text):
        self._problem = text
        self._on_state()


def shown(value, limit=64):
    """Another client's field in a message of ours: short and printable."""
    text = str(value)
    return text if len(text) <= limit and text.isprintable() else ascii(text[:limit])


def local_time(seconds):
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(seconds)))
    except (TypeError, ValueError, OverflowError, OSError):
        return "at an unknown time"


def correlation_properties(correlation_data):
    """PUBLISH properties carrying MQTT 5 correlation data, or None when there is none to carry."""
    if correlation_data is None:
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    properties = Properties(PacketTypes.PUBLISH)
    properties.CorrelationData = correlation_data
    return properties


def confirmed(info):
    """paho's is_published(), which raises for a message published while disconnected."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def describe_error(exc):
    """An OSError as a person reads it: 'Connection refused', 'Name or service not known'..."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
