"""The broker connection, over paho-mqtt 1.6 or 2.x.

One thread (supervised by the daemon) owns the paho client and is the only one that calls it: it uses
paho's public external-loop API (socket, want_write, loop_read/write/misc) and a wake-up pipe, so other
threads only append to our own bounded outbox. That thread:
- connects, and reconnects with capped exponential backoff, logging every failed attempt with its cause;
- publishes `online` (retained) and re-publishes retained state and re-subscribes on every connect; the
  last will is a retained `offline`;
- stops retrying once the broker rejects the credentials, and says so (log, STATUS=, telemetry);
- publishes a retained `instance` record (a random id, host, pid, start time) and reads it back on every
  reconnect: a record not its own, which appeared after its own was acknowledged, proves that a second
  facewatch publishes with the same device_id (each takes the connection from the other). That is reported
  plainly, naming the other's host and pid, and the one that started later backs off: it leaves the
  connection, publishes nothing (dropped, counted `second_instance`), and tries again quietly after
  SECOND_INSTANCE_BACKOFF s (doubling to SECOND_INSTANCE_BACKOFF_MAX) while the earlier one keeps running;
- reads its own `status` topic: a message there that is not its `online` (someone else's retained
  `offline`) is answered with `online` again (retained), at most once every CORRECTION_INTERVAL s;
- treats the broker as hostile ground: on MQTT 5 it asks the broker not to send packets larger than
  MAX_INCOMING_PACKET (paho would hold a whole 256 MB payload in memory before any check of ours); the
  instance record is read through untrusted.load_json with a small bound and every field checked, and a bad
  one is counted (`instance_rejected`) and answered with ours, never a dead thread;
- reports a connection the broker closes before answering CONNECT, and (MQTT 5, paho 2) messages the
  broker refuses (an ACL), which are counted as dropped, not as published.

Counting (telemetry `mqtt`): a message is `dropped` only when it is really lost: QoS 0 while the link
is down, anything beyond `queue_size` outstanding messages, a QoS 0 message paho discarded when the
connection broke. A QoS 1 message published while the link is down waits (bounded) and is delivered
after the reconnect; paho re-sends any QoS 1 message the broker had not acknowledged.
"""
import collections
import logging
import math
import os
import select
import socket
import ssl
import threading
import time
import uuid

import paho.mqtt.client as paho

from appliance import __version__, untrusted
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
# The largest MQTT packet the broker may send us, asked for in CONNECT (MQTT 5 Maximum Packet Size; a broker
# drops a larger message for this client, mosquitto logging "Dropping too large outgoing PUBLISH"). What
# facewatch must receive: a command (its payload at most 4,096 bytes, envelope.MAX_PAYLOAD_BYTES, plus its
# topic and MQTT 5 properties such as correlation data and a response topic), its own status and its instance
# record (a few hundred bytes): 64 KiB is all of that many times over. Without it paho reads a whole
# payload (mosquitto allows 256 MB) into memory before any check of ours sees it. MQTT 3.1.1 has no such
# property: there the broker must be configured with a limit (mosquitto: max_packet_size).
MAX_INCOMING_PACKET = 64 * 1024
INSTANCE_RECORD_MAX_BYTES = 1024    # ours is ~150 bytes: {"v", "instance", "host", "pid", "started", "version"}
INSTANCE_RECORD_MAX_DEPTH = 2       # a flat object (one level to spare)
MAX_START_TIME = 1e11               # UNIX seconds (year 5138), as envelope.MAX_TS
MAX_PID = 2 ** 31
CORRECTION_INTERVAL = 5.0           # our status or instance record restored at most this often (two such
                                    # clients fighting over a topic make 2 messages per interval, not a storm)
REJECTION_LOG_INTERVAL = 60.0       # a flood of bad records or foreign statuses: one log line a minute
SECOND_INSTANCE_BACKOFF = 60.0      # the later of two facewatch with one device_id stays out this long...
SECOND_INSTANCE_BACKOFF_MAX = 960.0  # ...doubling at each try that finds the other still there, to this
PROBE_WINDOW = 5.0                  # a try after backing off: a connection the other does not take back within
                                    # this long (it reconnects at once) means the other is gone
# Why a message was dropped (telemetry mqtt.dropped_by_cause).
DISCONNECTED, QUEUE_FULL, CONNECTION_LOST, REFUSED_BY_CLIENT, REFUSED_BY_BROKER, SECOND_INSTANCE = (
    "disconnected", "queue_full", "connection_lost", "refused_by_client", "refused_by_broker", "second_instance")


def make_paho_client(client_id, protocol="3.1.1"):
    """A paho Client with version-2 callbacks on paho 2.x, the only kind on 1.6."""
    kwargs = {"client_id": client_id, "protocol": paho.MQTTv5 if protocol == "5" else paho.MQTTv311}
    if protocol != "5":
        kwargs["clean_session"] = True
    if PAHO_2:
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    return paho.Client(**kwargs)


def connect_properties(protocol):
    """CONNECT properties for `protocol`: on MQTT 5, Maximum Packet Size MAX_INCOMING_PACKET; None on 3.1.1."""
    if protocol != "5":
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    properties = Properties(PacketTypes.CONNECT)
    properties.MaximumPacketSize = MAX_INCOMING_PACKET
    return properties


def reason_value(reason):
    """The number of a paho reason code, whatever paho version and protocol produced it."""
    return reason.value if hasattr(reason, "value") else int(reason)


OutgoingMessage = collections.namedtuple("OutgoingMessage", "topic data qos retain properties")


class MqttLink:
    def __init__(self, settings, topics, password=None, on_state=None, instance_key=None):
        """instance_key: the command key; our instance record is signed with it, and a record not signed
        with it is a forgery, never a reason to back off."""
        self.settings = settings
        self._instance_key = instance_key
        self.topics = topics
        self._password = password
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
        self.connected = threading.Event()   # connected, and publishing as this device
        self._session = False                # the broker accepted CONNECT on the connection now open
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
                                                   __version__, key=instance_key)
        self._instance_mid = None
        self._instance_acknowledged = False   # our record is retained at the broker
        self._instance_armed = False          # ...and was before this connection: a foreign one is now evidence
        self.status_corrected = 0
        self.instance_corrected = 0
        self.instance_rejected = 0
        self._corrected_at = {}               # topic -> when ours was last published again there
        self._correction_due = set()          # topics to correct once CORRECTION_INTERVAL has passed
        self._logged_at = {}                  # what -> when a rate-limited line was last logged
        self._backing_off = False             # a facewatch that started earlier has this device_id: stay out
        self._backoff_delay = SECOND_INSTANCE_BACKOFF
        self._other = None                    # the earlier instance's record
        self._leave = False                   # leave the connection now (backing off)
        self._leaving = False                 # ...and the DISCONNECT that follows is ours
        self._probing = False                 # a quiet try after backing off: publish nothing yet
        self._resuming = False                # ...that held: connect again at once, as this device
        self._probe_started = None
        self._client = self._make_client(password)

    def _make_client(self, password, quiet=False):
        """The paho client; `quiet` (a try after backing off) without the last will: the retained status is
        the other instance's, and a takeover of this try must not publish `offline` for it."""
        client = make_paho_client("facewatch-" + self.topics.device, self.settings.protocol)
        if self.settings.username:
            client.username_pw_set(self.settings.username, password.decode("utf-8") if password else None)
        if self.settings.tls_ca or self.settings.tls_cert:
            client.tls_set(ca_certs=self.settings.tls_ca or None, certfile=self.settings.tls_cert or None,
                           keyfile=self.settings.tls_key or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if not quiet:
            client.will_set(self.topics.status, contract.OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive,
                             properties=connect_properties(self.settings.protocol))
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
            if self._backing_off:
                self.dropped[SECOND_INSTANCE] += 1
                return False
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

        A second instance's report outlives the connections in between, until one lasts STABLE_CONNECTION;
        backing off for an earlier one, it stays until this one publishes again.
        """
        if self._takeover and not self._backing_off and self.connected.is_set() and self._connected_at and \
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
                    "status_corrected": self.status_corrected, "instance_corrected": self.instance_corrected,
                    "instance_rejected": self.instance_rejected, "backing_off": self._backing_off,
                    "error": self.problem() or None}

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
            if self._backing_off and not self._probing:
                self._wait(self._backoff_delay)
                self._probing = True
                self._client = self._make_client(self._password, quiet=True)
                continue
            if not self._connect(delay):
                self._wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                continue
            self._serve_connection()
            if self._resuming:   # a quiet try held: connect again at once, as this device
                self._resuming = False
                delay = self.settings.reconnect_min
            elif self._backing_off and not self._probing:   # the next try waits the back-off delay
                delay = self.settings.reconnect_min
            elif self._connected_at and time.monotonic() - self._connected_at >= STABLE_CONNECTION:
                delay = self.settings.reconnect_min
            elif not self._stopping.is_set():
                self._wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
        self._finish()

    def _connect(self, delay):
        """Open the TCP (and TLS) connection and send CONNECT; False, logged with the cause, if it fails."""
        self._connected_at = None
        self._session = False
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
        """Run the open connection until it ends, facewatch stops, or this one backs off."""
        sent_at = time.monotonic()
        while not self._stopping.is_set():
            if self._leave:
                self._leave_connection()
                return
            sock = self._client.socket()
            if sock is None:
                return
            if not self._session and time.monotonic() - sent_at > CONNACK_TIMEOUT:
                self._set_problem("{}:{} accepted the connection but did not answer CONNECT within {:.0f} s".format(
                    self.settings.host, self.settings.port, CONNACK_TIMEOUT))
                log.warning("mqtt: %s", self._problem)
                self._client.disconnect()
                return
            if self._probing and self._session and time.monotonic() - self._probe_started >= PROBE_WINDOW:
                self._resume()
                continue
            if self.connected.is_set():
                if self._subscribe_wanted:
                    self._subscribe_commands(self._client)
                self._correct_when_due()
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

    # --- a second instance with this device_id ------------------------------------------------------------

    def _back_off(self, other):
        """An instance that started before this one publishes as this device: leave the connection with a clean
        DISCONNECT (no will: the status is the other's), drop what waits, publish nothing, try again later."""
        self._other = other
        first = not self._backing_off
        with self._lock:
            self._backing_off = True
            lost = len(self._outbox) + len(self._pending)
            self._outbox.clear()
            self._pending.clear()
            if lost:
                self.dropped[SECOND_INSTANCE] += lost
        self._instance_acknowledged = False   # after this, the retained record is the other's, not ours
        self._correction_due.clear()
        self.connected.clear()
        self._leave = True
        self._takeover = self._backoff_text()
        self._set_problem(self._takeover)
        if first:
            log.error("mqtt: %s", self._takeover)

    def _backoff_text(self):
        return ("another facewatch publishes as device_id {!r}: {}, which started before this one. This one backs "
                "off: it publishes nothing and tries again in {:.0f} s. Give each device its own "
                "mqtt.device_id".format(self.topics.device, describe_instance(self._other), self._backoff_delay))

    def _leave_connection(self):
        """A clean DISCONNECT, and a new paho client: the old one would send its unacknowledged messages again."""
        self._leave = False
        self._leaving = True
        try:
            self._client.disconnect()
            if self._client.socket() is not None:
                self._client.loop_write()
        finally:
            self._leaving = False
        self._session = False
        self._client = self._make_client(self._password)

    def _still_there(self, reason):
        """A quiet try was taken over: the earlier instance is still running. Stay out twice as long."""
        self._probing = False
        self._backoff_delay = min(self._backoff_delay * 2, SECOND_INSTANCE_BACKOFF_MAX)
        self._takeover = self._backoff_text()
        self._set_problem(self._takeover)
        log.info("mqtt: the other facewatch with device_id %r took the connection back (%s); trying again in %.0f s",
                 self.topics.device, reason, self._backoff_delay)
        self._leave = True   # a new paho client, nothing of this connection kept

    def _resume(self):
        """A quiet try held PROBE_WINDOW s: the other instance is gone. Leave it, and connect again at once with
        the last will, as this device."""
        log.warning("mqtt: no other facewatch took the connection within %.0f s; publishing as device_id %r again",
                    PROBE_WINDOW, self.topics.device)
        self._probing = False
        self._backoff_delay = SECOND_INSTANCE_BACKOFF
        self._takeover = ""
        self._set_problem("connecting to {}:{}".format(self.settings.host, self.settings.port))
        with self._lock:
            self._backing_off = False
        self._resuming = True
        self._leave = True

    # --- paho callbacks (on the network thread) ------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        code = reason_value(reason)
        if code != 0:
            self._refused(client, code, reason)
            return
        self._session = True
        if self._probing:   # the record names the other in the log; it is not evidence (it may be a dead one's)
            self._probe_started = time.monotonic()
            client.subscribe(self.topics.instance, qos=1)
            log.info("mqtt: connected to %s:%s quietly, to see whether the other facewatch is still there",
                     self.settings.host, self.settings.port)
            return
        self._announce(client)

    def _announce(self, client):
        """What every connect publishes as this device: the instance record, `online`, the retained state; then
        the subscriptions (our status only after `online`, so that what it holds then is ours)."""
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
        client.subscribe(self.topics.status, qos=1)
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
        was_probing = self._probing and self._session
        self.connected.clear()
        self._session = False
        self._forget_unsent_qos0()
        if self._stopping.is_set() or self._leaving:
            return
        if was_probing:
            self._still_there(reason)
            return
        if self._backing_off:
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

    def _check_instance(self, message):
        """The record on our instance topic. Retained when we (re)subscribed, not ours, and ours had been
        acknowledged before: another live process publishes as us (it can only have written it by taking the
        connection from us); the one that started later backs off. Published while we hold the connection (not
        retained), it cannot be such a twin: someone else writes on our topic, and ours is restored."""
        try:
            other = instance_record(message.payload)
        except untrusted.Refused as exc:
            with self._lock:
                self.instance_rejected += 1
            self._log_limited("instance", "mqtt: ignored a record on %s: %s (%d so far)", self.topics.instance,
                              untrusted.shown(str(exc)), self.instance_rejected)
            if not message.retain and self.connected.is_set():
                self._correct(self.topics.instance)
            return
        if other["instance"] == self._instance["instance"]:
            self._correction_due.discard(self.topics.instance)
            return
        if self._instance_key is not None and not contract.instance_signed_by(
                untrusted.load_json(message.payload, INSTANCE_RECORD_MAX_BYTES, "the record", INSTANCE_RECORD_MAX_DEPTH),
                self._instance_key):
            self._forged(other)
            return
        if self._probing:
            self._other = other
            return
        if not self.connected.is_set():
            return
        if message.retain:
            if not self._instance_armed:   # a previous run's, or ours not yet acknowledged: ours replaces it
                return
            if (other["started"], other["instance"]) < (self._instance["started"], self._instance["instance"]):
                self._back_off(other)
            else:
                self._second_instance("{}, which started after this one and backs off".format(
                    describe_instance(other)))
            return
        self._log_limited("instance", "mqtt: another client published a record on %s as %s; publishing ours again",
                          self.topics.instance, describe_instance(other))
        self._correct(self.topics.instance)

    def _forged(self, other):
        """A record on our instance topic not signed with the command key: no twin of ours wrote it (a twin has
        the key), someone else did. Never grounds for backing off; counted, said, and ours published again."""
        with self._lock:
            self.instance_rejected += 1
        self._log_limited("instance", "mqtt: ignored a record on %s not signed with this device's command key "
                          "(%s): someone else wrote it; publishing ours again (%d so far)", self.topics.instance,
                          describe_instance(other), self.instance_rejected)
        if self.connected.is_set():
            self._correct(self.topics.instance)

    def _check_status(self, payload):
        """Our status topic says something other than `online` (someone else's retained `offline`): say it again."""
        if not self.connected.is_set() or self._stopping.is_set():
            return
        if bytes(payload) == contract.ONLINE.encode("ascii"):
            self._correction_due.discard(self.topics.status)
            return
        self._log_limited("status", "mqtt: another client published %s on %s; publishing %r again",
                          untrusted.shown(bytes(payload[:64]).decode("utf-8", "replace"), 64) if payload else "nothing",
                          self.topics.status, contract.ONLINE)
        self._correct(self.topics.status)

    def _correct(self, topic):
        """Publish ours again on `topic` (retained, QoS 1), at most once per CORRECTION_INTERVAL; one asked for
        sooner goes out when the interval ends (unless ours came back meanwhile)."""
        now = time.monotonic()
        last = self._corrected_at.get(topic)
        if last is not None and now - last < CORRECTION_INTERVAL:
            self._correction_due.add(topic)
            return
        self._corrected_at[topic] = now
        self._correction_due.discard(topic)
        if topic == self.topics.status:
            data = contract.ONLINE
            with self._lock:
                self.status_corrected += 1
        else:
            data = contract.encode(self._instance)
            with self._lock:
                self.instance_corrected += 1
        self._send(OutgoingMessage(topic, data, 1, True, None))

    def _correct_when_due(self):
        for topic in list(self._correction_due):
            if time.monotonic() - self._corrected_at.get(topic, 0.0) >= CORRECTION_INTERVAL:
                self._correct(topic)

    def _log_limited(self, what, text, *args):
        """A warning about another client's messages: the first, then at most one per REJECTION_LOG_INTERVAL."""
        now = time.monotonic()
        last = self._logged_at.get(what)
        if last is None or now - last >= REJECTION_LOG_INTERVAL:
            self._logged_at[what] = now
            log.warning(text, *args)

    def _subscribe_commands(self, client):
        self._subscribe_wanted = False
        client.subscribe([(pattern, 1) for pattern in self.topics.commands])

    def _on_message(self, client, userdata, message):
        if message.topic == self.topics.instance:
            self._check_instance(message)
            return
        if message.topic == self.topics.status:
            self._check_status(message.payload)
            return
        if not self.connected.is_set():   # a quiet try is subscribed to nothing else; nothing arrives late
            return
        target = self.topics.command_target(message.topic)
        if target is not None and self._on_command:
            self._on_command(target[0], target[1], message.payload, getattr(message, "properties", None))

    def _set_problem(self, text):
        self._problem = text
        self._on_state()


def instance_record(payload):
    """The fields of an instance record (another process's, perhaps anyone's), checked; Refused if it is not one."""
    record = untrusted.expect_object(untrusted.load_json(payload, INSTANCE_RECORD_MAX_BYTES, "the record",
                                                         INSTANCE_RECORD_MAX_DEPTH), "the record")
    pid = untrusted.number(record.get("pid"), "pid", 0, MAX_PID)
    if not isinstance(pid, int):
        raise untrusted.Refused("pid must be an integer")
    return {"instance": untrusted.text(record.get("instance"), "instance", 64),
            "host": untrusted.text(record.get("host"), "host", 255),
            "pid": pid,
            "started": untrusted.number(record.get("started"), "started", 0, MAX_START_TIME),
            "version": untrusted.optional(untrusted.text, record.get("version"), "version", 64)}


def describe_instance(record):
    """A checked instance record, as a person reads it."""
    return "the process {} on host {} (started {}, facewatch {})".format(
        record["pid"], untrusted.shown(record["host"], 64), local_time(record["started"]),
        untrusted.shown(record["version"], 64) if record["version"] is not None else "of an unknown version")


def local_time(seconds):
    """A UNIX time as local time; any other value (a string, a bool, NaN, 10**400) as 'at an unknown time'."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return "at an unknown time"
    try:
        if not math.isfinite(seconds):
            return "at an unknown time"
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
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
