"""The MQTT broker `facewatch demo` publishes to when it is given no --broker: a private mosquitto when one
is installed, else amqtt (a maintained pure-Python broker, Python >= 3.10) inside this process; else a
clear error that says what to install.

Either listens on 127.0.0.1 on a free port, for this run only, and is stopped when the demo ends (also on
Ctrl-C and on errors): `start()` returns it started, `stop()` stops it and may be called more than once.
"""
import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from appliance.errors import FacewatchError

HOST = "127.0.0.1"
# Where Debian, Ubuntu and JetPack put mosquitto (and a source build); /usr/sbin is not on a user's PATH.
MOSQUITTO_FALLBACKS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 5  # another process may take the free port we picked before the broker binds it

INSTALL_HINT = ("install mosquitto (the demo starts a private one on 127.0.0.1 and stops it at the end): "
                "sudo apt-get install mosquitto\n"
                "  or, on Python >= 3.10, the pure-Python broker amqtt: pip install 'facewatch[demo]'\n"
                "  or use a broker you already run: facewatch demo --broker HOST:PORT")


def start(path=None, fallbacks=None, timeout=START_TIMEOUT):
    """A started private broker: mosquitto (found on `path`, default $PATH, else at one of `fallbacks`,
    default MOSQUITTO_FALLBACKS), else amqtt; FacewatchError (exit 1) saying what to install when neither
    is there."""
    fallbacks = MOSQUITTO_FALLBACKS if fallbacks is None else fallbacks
    binary = find_mosquitto(path, fallbacks)
    if binary:
        return Mosquitto(binary).start(timeout)
    problem = amqtt_problem()
    if problem is None:
        return Amqtt().start(timeout)
    raise FacewatchError("no MQTT broker to run the demo on: no mosquitto on PATH{}, and {}.\n"
                         "  To fix it, {}".format(
                             " or at " + " or ".join(fallbacks) if fallbacks else "", problem, INSTALL_HINT))


def find_mosquitto(path=None, fallbacks=None):
    found = shutil.which("mosquitto", path=path)
    if found:
        return found
    for candidate in MOSQUITTO_FALLBACKS if fallbacks is None else fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def amqtt_problem():
    """None when amqtt can be used, else why not, in words."""
    try:
        import amqtt.broker  # noqa: F401
    except ImportError as exc:
        if (getattr(exc, "name", None) or "").split(".")[0] == "amqtt":  # itself missing, not a dependency
            if sys.version_info < (3, 10):
                return "amqtt is not installed (it needs Python >= 3.10; this is Python {}.{})".format(
                    *sys.version_info[:2])
            return "amqtt is not installed"
        return "amqtt cannot be imported ({})".format(exc)
    return None


def free_port(host=HOST):
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_ready(host, port, deadline, alive):
    """True once the broker at HOST:PORT answers an MQTT CONNECT; False when `alive()` turns false (it
    exited) or at the deadline. A connection refused is retried at once, after a few milliseconds."""
    while time.monotonic() < deadline:
        if not alive():
            return False
        if answers_mqtt(host, port, timeout=min(1.0, max(0.1, deadline - time.monotonic()))):
            return alive()
        time.sleep(0.02)
    return False


def answers_mqtt(host, port, timeout=1.0):
    """Whether HOST:PORT accepts an MQTT 3.1.1 CONNECT (CONNACK 0); it then disconnects cleanly. A broker
    that merely accepts TCP could be another program that took the port first."""
    client_id = "facewatch-demo-probe-{}".format(os.getpid()).encode("ascii")
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + struct.pack("!H", len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return reply[0] == 0x20 and reply[3] == 0
    except OSError:
        return False


def _address_in_use(text):
    return "in use" in text.lower()


class Mosquitto:
    """A mosquitto of its own: a minimal config in a temporary folder (127.0.0.1, a free port, anonymous,
    no persistence), its output captured there, run as the user who runs the demo, in its own session so
    that a Ctrl-C in the terminal reaches facewatch only, which then stops it; and, on Linux, ended by the
    kernel should facewatch be killed."""

    name = "mosquitto"

    def __init__(self, binary, host=HOST):
        self.binary = binary
        self.host = host
        self.port = None
        self.version = ""
        self.process = None
        self.directory = None
        self._log = None

    def start(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        self.directory = tempfile.mkdtemp(prefix="facewatch-demo-mosquitto-")
        try:
            for _ in range(PORT_ATTEMPTS):
                self.port = free_port(self.host)
                self._launch()
                if wait_ready(self.host, self.port, deadline, lambda: self.process.poll() is None):
                    self.version = self._version()
                    return self
                self._end_process()
                if not _address_in_use(self.output()) or time.monotonic() >= deadline:
                    break
            raise FacewatchError("{} did not start a broker on {}:{}{}".format(
                self.binary, self.host, self.port, self._output_for_error()))
        except BaseException:  # a failure, or Ctrl-C while it starts: leave nothing behind
            self.stop()
            raise

    def _launch(self):
        config = os.path.join(self.directory, "mosquitto.conf")
        with open(config, "w") as f:
            f.write("# facewatch demo: a private broker for one run, stopped at its end\n"
                    "listener {} {}\nallow_anonymous true\npersistence false\nlog_dest stderr\n{}".format(
                        self.port, self.host,
                        # Run by root, mosquitto would switch to its own user, which also cancels the
                        # kernel's end-with-parent request: it keeps the demo's own user instead.
                        "user root\n" if os.geteuid() == 0 else ""))
        if self._log:
            self._log.close()
        self._log = open(os.path.join(self.directory, "mosquitto.log"), "w")
        self.process = subprocess.Popen([self.binary, "-c", config], stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=self.directory, start_new_session=True,
                                        preexec_fn=_end_with_parent())

    def output(self):
        """What mosquitto wrote so far (its log)."""
        if not self.directory:
            return ""
        try:
            with open(os.path.join(self.directory, "mosquitto.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _output_for_error(self):
        code = self.process.poll() if self.process else None
        lines = [line for line in self.output().splitlines() if line.strip()][-5:]
        return "{}{}".format(" (it exited with status {})".format(code) if code is not None else "",
                             ": " + " | ".join(lines) if lines else "")

    def _version(self):
        found = re.search(r"mosquitto version (\S+)", self.output())
        if found:
            return found.group(1)
        try:  # `mosquitto -h` names its version on the first line (and exits 3)
            result = subprocess.run([self.binary, "-h"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, universal_newlines=True, timeout=5)
            found = re.search(r"mosquitto version (\S+)", result.stdout)
        except (OSError, subprocess.SubprocessError):
            found = None
        return found.group(1) if found else ""

    def _end_process(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self):
        self._end_process()
        if self._log:
            self._log.close()
            self._log = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def describe(self):
        return describe(self)


def _end_with_parent():
    """A preexec_fn asking Linux to send SIGTERM to the child when facewatch dies (PR_SET_PDEATHSIG), so a
    killed demo leaves no broker behind; None where that cannot be had. Resolved before the fork."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def request():
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    return request


class Amqtt:
    """amqtt's Broker in this process: a background thread running its own asyncio event loop, with the
    documented `Broker(config)`, `await start()` and `await shutdown()`. MQTT 3.1.1 only, which the demo
    speaks."""

    name = "amqtt"

    def __init__(self, host=HOST):
        self.host = host
        self.port = None
        self.version = ""
        self._thread = None
        self._loop = None
        self._stopping = None
        self._started = threading.Event()
        self._error = None

    def start(self, timeout=START_TIMEOUT):
        import amqtt
        from amqtt.broker import Broker
        self.version = getattr(amqtt, "__version__", "")
        quiet_amqtt_logs()
        deadline = time.monotonic() + timeout
        try:
            for _ in range(PORT_ATTEMPTS):
                self.port = free_port(self.host)
                self._started.clear()
                self._error = None
                self._thread = threading.Thread(target=self._serve, args=(Broker,), name="amqtt-broker",
                                                daemon=True)
                self._thread.start()
                self._started.wait(max(0.0, deadline - time.monotonic()))
                if self._error is None and self._loop is not None and wait_ready(
                        self.host, self.port, deadline, self._thread.is_alive):
                    return self
                self.stop()
                if not _address_in_use(str(self._error)) or time.monotonic() >= deadline:
                    break
            raise FacewatchError("amqtt {} did not start a broker on {}:{}: {}".format(
                self.version, self.host, self.port, self._error or "not listening within {:.0f} s".format(timeout)))
        except BaseException:
            self.stop()
            raise

    def _serve(self, broker_class):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(broker_class, loop))
            # Client connections amqtt has not finished with yet: cancel them, then close the loop quietly.
            # (asyncio.all_tasks is Python 3.7+; amqtt needs 3.10, and this module is imported on 3.6.)
            pending = [task for task in getattr(asyncio, "all_tasks")(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception as exc:  # reported by start(); after a start, stop() goes on regardless
            self._error = self._error or exc
        finally:
            self._started.set()
            loop.close()

    async def _main(self, broker_class, loop):
        self._stopping = asyncio.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "{}:{}".format(self.host, self.port)}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            broker = broker_class(config)
            await broker.start()
        except Exception as exc:
            self._error = exc
            return
        self._loop = loop
        self._started.set()
        await self._stopping.wait()
        await broker.shutdown()

    def stop(self):
        thread = self._thread
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(STOP_TIMEOUT)
        self._thread = None
        self._loop = None

    def describe(self):
        return describe(self)


class LateAcknowledgement(logging.Filter):
    """amqtt (0.12, mqtt/protocol/handler.py) handles each packet read in its own task: when the demo's
    subscriber acknowledges the last message and disconnects at once, the DISCONNECT's task may stop the
    session (cancelling the acknowledgement waiters) before the PUBACK's task runs, which then warns about
    an unknown message. The message was delivered; the warning says nothing a demo user can act on."""

    def filter(self, record):
        return not record.getMessage().startswith("Received PUBACK for unknown pending message")


def quiet_amqtt_logs():
    """amqtt and its state machines log every step at INFO; the demo shows their warnings only (all with
    --log-level debug), less the one its shutdown race gives."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        handler_log = logging.getLogger("amqtt.mqtt.protocol.handler")
        if not any(isinstance(existing, LateAcknowledgement) for existing in handler_log.filters):
            handler_log.addFilter(LateAcknowledgement())


def describe(broker):
    return "{}{} on {}:{} (private, stopped at the end)".format(
        broker.name, " " + broker.version if broker.version else "", broker.host, broker.port)
