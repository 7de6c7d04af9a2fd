"""Commands from the broker: checked in a fixed order, then run by the handler of their name.

Order: rate limit (before anything is read, so a flood costs nothing and gets no replies) -> size ->
JSON -> fields -> known command -> device -> freshness (ts) -> signature -> replay -> the handler's own
check of its args. Any failure is a `rejected` reply with the reason and is counted; nothing rejected is
executed. Messages on PREFIX/all/cmd/... that name another device are none of this device's business
and are ignored. The MQTT thread only queues; a supervised thread does the work. A rejection of a payload
whose id could not be read carries `payload_sha256`, so the sender can still tell it is about its command.
"""
import hashlib
import logging
import queue
import threading
import time

from appliance import untrusted
from appliance.remote import envelope as envelopes
from appliance.remote.envelope import Rejected

log = logging.getLogger(__name__)

RATE_PER_SECOND = 10.0
BURST = 20
QUEUE_SIZE = 50


class TokenBucket:
    def __init__(self, rate=RATE_PER_SECOND, burst=BURST, clock=time.monotonic):
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Command:
    """An accepted command, as a handler sees it; reply(state, ...) answers it."""

    def __init__(self, name, envelope, reply):
        self.name = name
        self.id = envelope["id"]
        self.args = envelope.get("args", {})
        self._reply = reply

    def reply(self, state, ok=True, error=None, **fields):
        self._reply(self.id, self.name, state, ok, error, fields)


class Dispatcher:
    def __init__(self, device, key, allow_unsigned, guard, handlers, reply, stop_event, clock=time.time,
                 on_state=None):
        """handlers: {name: handler(Command)}; reply(id, command, state, ok, error, fields, properties);
        on_state() when problem() may have changed."""
        self.device = device
        self._key = key
        self._allow_unsigned = allow_unsigned
        self._guard = guard
        self._handlers = handlers
        self._reply = reply
        self._stop = stop_event
        self._clock = clock
        self._on_state = on_state or (lambda: None)
        self._problem = ""
        self._bucket = TokenBucket()
        self._queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._lock = threading.Lock()
        self.accepted = self.rejected = self.rate_limited = 0
        self.last_rejection = ""

    def submit(self, topic_device, name, payload, properties=None):
        """From the MQTT thread: queue a command, or count it away if the rate or the queue is exceeded."""
        if not self._bucket.take():
            self._count("rate_limited")
            return
        try:
            self._queue.put_nowait((topic_device, name, bytes(payload), properties))
        except queue.Full:
            self._count("rate_limited")

    def run(self):
        """The supervised loop: one command at a time, until facewatch stops."""
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.handle(*item)

    def handle(self, topic_device, name, payload, properties):
        try:
            try:
                envelope = envelopes.parse(payload)
                if topic_device == "all" and envelope["device"] not in ("all", self.device):
                    return  # addressed to another device through the shared topic
                self._check(name, envelope)
            finally:
                self._notice_problem()
        except Rejected as exc:
            fields = {} if exc.command_id else {"payload_sha256": hashlib.sha256(payload).hexdigest()}
            self._reject(name, exc, properties, fields=fields)
            return
        command = Command(name, envelope, self._replier(properties, authenticated=True))
        try:
            self._handlers[name](command)
        except Rejected as exc:
            self._reject(name, Rejected(str(exc), command.id), properties, authenticated=True)
            return
        self._count("accepted")

    def _check(self, name, envelope):
        if name not in self._handlers:
            raise Rejected("unknown command {}; known: {}".format(untrusted.shown(repr(name), 80),
                                                                 ", ".join(sorted(self._handlers))), envelope["id"])
        if self._key is None and not self._allow_unsigned:
            raise Rejected("no command key is configured on this device (commands.key_file or the systemd "
                           "credential command_key); unsigned commands are refused", envelope["id"])
        now = self._clock()
        envelopes.verify(envelope, self._key, name, self.device, now)
        try:
            self._guard.admit(envelope["id"], envelope["ts"], now)
        except Rejected as exc:
            raise Rejected(str(exc), envelope["id"])

    def _notice_problem(self):
        problem = self._guard.problem()
        if problem != self._problem:
            self._problem = problem
            self._on_state()

    def problem(self):
        """What is wrong with the commands' replay protection, in words, or ''."""
        return self._guard.problem()

    def _reject(self, name, exc, properties, authenticated=False, fields=None):
        reason = untrusted.shown(str(exc), 400)
        self._count("rejected", reason)
        log.warning("commands: %s rejected: %s", untrusted.shown(name, 80), reason)
        self._replier(properties, authenticated)(exc.command_id, name, "rejected", False, reason, fields or {})

    def _replier(self, properties, authenticated):
        """Replies go to the MQTT 5 response topic only for signed commands: an unauthenticated sender must
        not be able to make this device publish where it likes."""
        def reply(command_id, name, state, ok, error, fields):
            self._reply(command_id, name, state, ok, error, fields, properties if authenticated else None)
        return reply

    def _count(self, outcome, reason=""):
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if reason:
                self.last_rejection = reason

    def stats(self):
        with self._lock:
            return {"accepted": self.accepted, "rejected": self.rejected, "rate_limited": self.rate_limited,
                    "last_rejection": self.last_rejection or None,
                    "replay_record_error": self._guard.problem() or None}


def checked_args(command, allowed):
    """command.args checked against allowed = {name: (type, choices or None, default)}; Rejected naming
    an unknown arg, a wrong type or a value not among the choices."""
    unknown = sorted(set(command.args) - set(allowed))
    if unknown:
        raise Rejected("unknown arg(s) for {}: {}; known: {}".format(
            command.name, ", ".join(unknown), ", ".join(sorted(allowed)) or "none"))
    values = {}
    for name, (kind, choices, default) in allowed.items():
        value = command.args.get(name, default)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise Rejected("{} must be {}, got {!r}".format(name, kind.__name__, value))
        if choices and value not in choices:
            raise Rejected("{} must be one of {}, got {!r}".format(name, ", ".join(choices), value))
        values[name] = value
    return values
