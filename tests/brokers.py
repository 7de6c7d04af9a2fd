"""A real mosquitto on 127.0.0.1 for the tests, and a subscriber that records what arrives."""
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho


# Ports come from a block of this test process's own, below Linux's ephemeral range (32768-60999), taken in
# turn: a port the kernel gives at random could be one a broker of a test on the other xdist worker had
# until it stopped, whose daemon still reconnects to it (seen in CI: that daemon's anonymous attempts in
# the log of a test counting its own).
FIRST_PORT = 20000
PORT_BLOCK = 4000
_next_port = itertools.count(random.Random(os.getpid()).randrange(PORT_BLOCK))


def free_port():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = FIRST_PORT + (int(worker) % 3 if worker.isdigit() else 0) * PORT_BLOCK
    for _ in range(PORT_BLOCK):
        port = base + next(_next_port) % PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 127.0.0.1:{}-{}".format(base, base + PORT_BLOCK - 1))


def refuses(port):
    """Nothing listens on 127.0.0.1:port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def leftovers(folder):
    """facewatch's temporary folders (a private broker's) left in `folder`."""
    return [name for name in os.listdir(str(folder)) if name.startswith("facewatch-")]


def paho_client(port, protocol=paho.MQTTv311, client_id=None, name="test-client"):
    """A paho client connected to 127.0.0.1:port with its network loop running (paho 1.6 and 2.x)."""
    kwargs = {"client_id": client_id or "{}-{}".format(name, uuid.uuid4().hex[:8]), "protocol": protocol}
    if hasattr(paho, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    client = paho.Client(**kwargs)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after {} s waiting for {}".format(timeout, message))


class Mosquitto:
    """mosquitto on 127.0.0.1: its log in DIRECTORY/mosquitto.log; `persistent` keeps sessions and queued
    messages across restarts (saved on every change, so even a SIGKILL loses nothing acknowledged)."""

    def __init__(self, directory, extra_config="", persistent=False, port=None):
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(self.binary):
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (bash .ci/run does)")
        self.directory = str(directory)
        self.fixed_port = port
        self.port = port or free_port()
        self.config = os.path.join(self.directory, "mosquitto.conf")
        self.log_path = os.path.join(self.directory, "mosquitto.log")
        self.persistence = ("persistence true\npersistence_location {}/\nautosave_interval 1\n"
                            "autosave_on_changes true\n".format(self.directory) if persistent else "persistence false\n")
        self.extra_config = extra_config or "allow_anonymous true\n"
        self.process = None

    def _write_config(self):
        with open(self.config, "w") as f:
            f.write("listener {} 127.0.0.1\n{}log_dest file {}\nuser root\n{}".format(
                self.port, self.persistence, self.log_path, self.extra_config))

    def start(self):
        """Start on the chosen port; if another process took it meanwhile (tests run in parallel), on another."""
        for _ in range(5):
            self._write_config()
            self.process = subprocess.Popen([self.binary, "-c", self.config],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: self._accepts() or self.process.poll() is not None, 10, message="mosquitto to listen")
            if self.process.poll() is None:
                return self
            if self.fixed_port:
                break
            self.port = free_port()
        raise RuntimeError("mosquitto did not start on port {}: {}".format(self.port, self.log()[-500:]))

    def stop(self, sig=None):
        """SIGKILL by default; signal.SIGTERM for a clean shutdown (it saves its state)."""
        if self.process and self.process.poll() is None:
            if sig is None:
                self.process.kill()
            else:
                self.process.send_signal(sig)
            self.process.wait()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""


    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False


class Recorder:
    """Subscribes to `pattern` and keeps every message: (topic, payload text, retain).

    clean=False: a persistent session (fixed client id, QoS 1) whose messages the broker keeps while the
    recorder is away, as a subscriber that must not miss anything would use."""

    def __init__(self, port, pattern, clean=True, credentials=None):
        self.messages = []
        self.raw = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        kwargs = {"client_id": "test-recorder-{}".format(id(self) if clean else "persistent"), "clean_session": clean}
        if hasattr(paho, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
        self.client = paho.Client(**kwargs)
        if credentials:
            self.client.username_pw_set(*credentials)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *args: client.subscribe(pattern, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((message.topic, message.payload.decode("utf-8", "replace"), bool(message.retain)))
            self.raw.append((message.topic, bytes(message.payload), bool(message.retain)))

    def raw_on(self, suffix):
        """[(payload bytes, retain)] on topics ending in /suffix (or equal to it)."""
        with self._lock:
            return [(payload, retain) for topic, payload, retain in self.raw
                    if topic == suffix or topic.endswith("/" + suffix)]

    def on(self, suffix):
        with self._lock:
            return [(payload, retain) for topic, payload, retain in self.messages if topic.endswith("/" + suffix)]

    def json_on(self, suffix):
        return [json.loads(payload) for payload, _ in self.on(suffix)]

    def last(self, suffix):
        found = self.on(suffix)
        return found[-1][0] if found else None

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
