"""The dispatcher on its own: every rejection replies and counts, floods cost nothing, handlers see only
what passed every check."""
import json
import random
import threading

from appliance.remote.dispatcher import QUEUE_SIZE, Dispatcher, checked_args
from appliance.remote.envelope import Rejected, sign
from appliance.remote.replay import ReplayGuard
from brokers import wait_until
from figures import record

KEY = b"k3y"
NOW = 1795320000


class Replies:
    def __init__(self):
        self.sent = []

    def __call__(self, command_id, name, state, ok, error, fields, properties):
        self.sent.append({"id": command_id, "command": name, "state": state, "ok": ok, "error": error,
                          "fields": fields, "properties": properties})


def make(tmp_path, key=KEY, allow_unsigned=False, handlers=None):
    replies = Replies()
    executed = []
    handlers = handlers or {"status": lambda command: executed.append(command.id) or command.reply("done"),
                            "rebuild": lambda command: executed.append(command.id)}
    dispatcher = Dispatcher("cam1", key, allow_unsigned, ReplayGuard(str(tmp_path)), handlers, replies,
                            threading.Event(), clock=lambda: NOW)
    return dispatcher, replies, executed


def payload(key=KEY, **changes):
    document = {"v": 1, "id": changes.pop("id", "c1"), "command": "status", "device": "cam1", "ts": NOW, "args": {}}
    document.update(changes)
    return json.dumps(sign(document, key) if key else document).encode("utf-8")


def test_a_signed_command_runs_once_and_its_replay_is_rejected(tmp_path):
    dispatcher, replies, executed = make(tmp_path)
    dispatcher.handle("cam1", "status", payload(), None)
    dispatcher.handle("cam1", "status", payload(), None)
    assert executed == ["c1"]
    assert [r["state"] for r in replies.sent] == ["done", "rejected"]
    assert "replayed id" in replies.sent[1]["error"]
    assert dispatcher.stats()["accepted"] == 1 and dispatcher.stats()["rejected"] == 1


def test_without_a_key_commands_are_refused_unless_unsigned_ones_are_allowed(tmp_path):
    dispatcher, replies, executed = make(tmp_path, key=None)
    dispatcher.handle("cam1", "status", payload(key=None), None)
    assert executed == [] and "no command key is configured" in replies.sent[-1]["error"]
    (tmp_path / "open").mkdir()
    dispatcher, replies, executed = make(tmp_path / "open", key=None, allow_unsigned=True)
    dispatcher.handle("cam1", "status", payload(key=None), None)
    assert executed == ["c1"]


def test_a_key_always_requires_a_signature_even_if_unsigned_ones_are_allowed(tmp_path):
    dispatcher, replies, executed = make(tmp_path, allow_unsigned=True)
    dispatcher.handle("cam1", "status", payload(key=None), None)
    assert executed == [] and replies.sent[-1]["error"] == "missing signature"


def test_unknown_commands_and_args_are_rejected(tmp_path):
    dispatcher, replies, executed = make(tmp_path, handlers={
        "rebuild": lambda command: checked_args(command, {"force": (bool, None, False)})})
    dispatcher.handle("cam1", "reboot", payload(command="reboot"), None)
    dispatcher.handle("cam1", "rebuild", payload(id="c2", command="rebuild", args={"forse": True}), None)
    dispatcher.handle("cam1", "rebuild", payload(id="c3", command="rebuild", args={"force": 1}), None)
    errors = [r["error"] for r in replies.sent]
    assert "unknown command 'reboot'" in errors[0]
    assert "unknown arg(s) for rebuild: forse" in errors[1]
    assert "force must be bool, got 1" in errors[2]


def test_a_command_for_another_device_through_the_all_topic_is_ignored(tmp_path):
    dispatcher, replies, executed = make(tmp_path)
    dispatcher.handle("all", "status", payload(device="cam2"), None)
    assert replies.sent == [] and executed == []
    dispatcher.handle("all", "status", payload(device="all"), None)
    assert executed == ["c1"]


def test_the_response_topic_is_honoured_only_for_signed_commands(tmp_path):
    dispatcher, replies, executed = make(tmp_path)
    properties = object()
    dispatcher.handle("cam1", "status", payload(), properties)
    dispatcher.handle("cam1", "status", payload(id="c2", key=b"wrong"), properties)
    assert replies.sent[0]["properties"] is properties and replies.sent[1]["properties"] is None


def test_a_flood_is_rate_limited_before_anything_is_read(tmp_path):
    """Judged by what telemetry and the replies show: the flood is counted away as it comes, nothing is
    read before the dispatcher runs, and what it then runs is at most its queue's worth."""
    replies, executed, stop = Replies(), [], threading.Event()
    dispatcher = Dispatcher("cam1", KEY, False, ReplayGuard(str(tmp_path)),
                            {"status": lambda command: executed.append(command.id) or command.reply("done")},
                            replies, stop, clock=lambda: NOW)
    for index in range(1000):
        dispatcher.submit("cam1", "status", payload(id="f{}".format(index)), None)
    flooded = dispatcher.stats()
    assert flooded["rate_limited"] >= 1000 - 60 and flooded["accepted"] == flooded["rejected"] == 0
    assert replies.sent == [] and executed == []
    worker = threading.Thread(target=dispatcher.run, daemon=True)
    worker.start()
    try:
        wait_until(lambda: sum(dispatcher.stats()[k] for k in ("accepted", "rejected", "rate_limited")) == 1000, 10,
                   message="every submitted command accounted for")
    finally:
        stop.set()
        worker.join(5)
    drained = dispatcher.stats()
    assert drained["rate_limited"] == flooded["rate_limited"] and drained["rejected"] == 0
    assert drained["accepted"] == len(executed) == 1000 - flooded["rate_limited"] <= QUEUE_SIZE
    assert [r["state"] for r in replies.sent] == ["done"] * len(executed)


def test_ten_thousand_malformed_payloads_are_each_rejected_without_a_crash(tmp_path):
    dispatcher, replies, executed = make(tmp_path)
    randomness = random.Random(10000)
    good = payload()
    same_meaning = crashes = 0
    for index in range(10000):
        kind = index % 4
        if kind == 0:
            data = bytes(randomness.getrandbits(8) for _ in range(randomness.randrange(0, 64)))
        elif kind == 1:
            data = bytearray(good)
            data[randomness.randrange(len(data))] = randomness.getrandbits(8)
            data = bytes(data)
        elif kind == 2:
            data = good[:randomness.randrange(len(good))]
        else:
            document = json.loads(good.decode())
            document[randomness.choice(list(document))] = randomness.choice([None, [], {}, "", 1.5, True, "x" * 200])
            data = json.dumps(document).encode()
        same_meaning += means_the_same(data, good)
        try:
            dispatcher.handle(randomness.choice(["cam1", "all"]), randomness.choice(["status", "rebuild", "x"]),
                              data, None)
        except Exception:   # what would end the daemon's dispatcher thread
            crashes += 1
    record("malformed commands x10000", crashes=crashes, executed=len(executed),
           rejected=dispatcher.stats()["rejected"])
    assert crashes == 0
    # A change of white space only is still the same signed command: run once at most (then a replay).
    assert executed == (["c1"] if executed else []) and (same_meaning or not executed)
    assert all(r["state"] == "rejected" and r["error"] for r in replies.sent if r["state"] != "done")


def means_the_same(data, good):
    try:
        return json.loads(data.decode("utf-8")) == json.loads(good.decode("utf-8"))
    except ValueError:
        return False


def test_checked_args_refuses_what_is_not_allowed():
    class Command:
        name, args = "rebuild", {"precision": "int4"}
    try:
        checked_args(Command, {"precision": (str, ("auto", "fp32"), "auto")})
    except Rejected as exc:
        assert "precision must be one of auto, fp32, got 'int4'" in str(exc)
    else:
        raise AssertionError("not refused")


def test_a_rejection_without_an_id_carries_the_payloads_digest(tmp_path):
    import hashlib
    dispatcher, replies, executed = make(tmp_path)
    data = b"x" * 5000
    dispatcher.handle("cam1", "status", data, None)
    assert replies.sent[-1]["id"] is None and "payload of 5000 bytes" in replies.sent[-1]["error"]
    assert replies.sent[-1]["fields"] == {"payload_sha256": hashlib.sha256(data).hexdigest()}
    dispatcher.handle("cam1", "status", payload(id="c9", ts="soon"), None)
    assert replies.sent[-1]["id"] == "c9" and replies.sent[-1]["fields"] == {}


def test_a_replay_record_that_cannot_be_saved_refuses_and_is_said_in_stats_and_state(tmp_path):
    import os
    from appliance.remote import replay
    changes = []
    guard = ReplayGuard(str(tmp_path), now=NOW - 3600)   # started an hour ago: no start-up quarantine left
    os.makedirs(os.path.join(str(tmp_path), replay.FILE_NAME))
    executed = []
    dispatcher = Dispatcher("cam1", KEY, False, guard, {"status": lambda command: executed.append(command.id)},
                            Replies(), threading.Event(), clock=lambda: NOW, on_state=lambda: changes.append(1))
    dispatcher.handle("cam1", "status", payload(), None)
    assert executed == [] and "cannot save the replay record" in dispatcher.problem()
    assert "cannot save the replay record" in dispatcher.stats()["replay_record_error"]
    assert changes == [1]
