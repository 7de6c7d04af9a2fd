"""The replay guard: an id is run once, across restarts and clock steps, and it fails closed."""
import json
import os
import subprocess
import sys

import pytest

from appliance.remote import replay
from appliance.remote.envelope import Rejected
from appliance.remote.replay import ReplayGuard
from private_mounts import namespaces_refused

NOW = 1795320000.0
BOOT = "boot-1"


class Clock:
    """The wall clock and the monotonic one; step() moves the wall clock alone, as `date -s` or NTP do."""

    def __init__(self, wall=NOW):
        self.wall, self.mono = wall, 1000.0

    def advance(self, seconds):
        self.wall += seconds
        self.mono += seconds

    def step(self, seconds):
        self.wall += seconds

    def monotonic(self):
        return self.mono


def guard_at(folder, clock, boot_id=BOOT):
    return ReplayGuard(str(folder), now=clock.wall, monotonic=clock.monotonic, boot_id=boot_id)


def admitted(guard, command_id, ts, now):
    try:
        guard.admit(command_id, ts, now)
        return True
    except Rejected:
        return False


def seed(folder, document):
    with open(os.path.join(str(folder), replay.FILE_NAME), "w") as f:
        json.dump(document, f)


def test_an_id_is_admitted_once(tmp_path):
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    assert admitted(guard, "a", NOW, NOW)
    with pytest.raises(Rejected, match="replayed id"):
        guard.admit("a", NOW, NOW + 1)
    assert admitted(guard, "b", NOW, NOW + 1)


def test_a_replay_is_refused_after_a_restart(tmp_path):
    clock = Clock()
    guard_at(tmp_path, clock).admit("a", NOW, NOW)
    clock.advance(30)
    assert not admitted(guard_at(tmp_path, clock), "a", NOW, clock.wall)


def test_ids_are_forgotten_once_their_ts_could_no_longer_be_fresh(tmp_path):
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    guard.admit("old", NOW, clock.wall)
    clock.advance(500)
    guard.admit("new", clock.wall, clock.wall)
    with open(guard.path) as f:
        assert set(json.load(f)["seen"]) == {"new"}


def test_a_clock_stepped_ahead_then_back_does_not_let_an_earlier_command_run_again(tmp_path):
    """Issue 18: +150 s, another command accepted (which forgot the first), then back: the first ran twice."""
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    assert admitted(guard, "first", NOW, clock.wall)
    clock.step(150)
    assert admitted(guard, "second", clock.wall, clock.wall)
    clock.step(-150)
    clock.advance(5)
    assert not admitted(guard, "first", NOW, clock.wall)


def test_a_clock_step_seen_before_a_restart_still_counts_after_it(tmp_path):
    clock = Clock()
    guard_at(tmp_path, clock).admit("first", NOW, clock.wall)
    clock.step(150)
    guard_at(tmp_path, clock).admit("second", clock.wall, clock.wall)   # a restart within the same boot
    clock.step(-150)
    assert not admitted(guard_at(tmp_path, clock), "first", NOW, clock.wall)


def test_ids_expire_once_even_the_earliest_clock_has_passed_them(tmp_path):
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    guard.admit("first", NOW, clock.wall)
    clock.step(150)
    clock.advance(2 * replay.KEEP + 1)
    guard.admit("later", clock.wall, clock.wall)
    with open(guard.path) as f:
        assert set(json.load(f)["seen"]) == {"later"}


def test_a_record_seeded_with_ids_from_the_future_is_reported_and_protection_goes_on(tmp_path):
    """Issue 18: 10,000 ids dated 2096 made every new id the oldest, evicted at once: replays ran, silently."""
    seed(tmp_path, {"v": 1, "seen": {"f{}".format(i): 3980000000.0 + i for i in range(10000)}})
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    assert "10000 ids dated up to 2096" in guard.problem() and "damaged" in guard.problem()
    assert admitted(guard, "a", NOW, NOW)
    assert not admitted(guard, "a", NOW, NOW + 1)
    assert not admitted(guard_at(tmp_path, clock), "a", NOW, NOW + 2)


def test_a_record_over_its_bound_is_reported_and_keeps_its_newest(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "MAX_IDS", 5)
    seed(tmp_path, {"v": 1, "seen": {"id{}".format(i): NOW - 10 + i for i in range(8)}})
    guard = guard_at(tmp_path, Clock())
    assert "8 ids, more than its bound of 5" in guard.problem()
    assert not admitted(guard, "id7", NOW, NOW) and not admitted(guard, "id3", NOW, NOW)


def test_a_full_record_refuses_new_commands_instead_of_forgetting_fresh_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "MAX_IDS", 5)
    guard = guard_at(tmp_path, Clock())
    for index in range(5):
        assert admitted(guard, "id{}".format(index), NOW, NOW)
    with pytest.raises(Rejected, match="the replay record is full"):
        guard.admit("id5", NOW, NOW)
    assert "the replay record is full" in guard.problem()
    assert not admitted(guard, "id0", NOW, NOW)


def test_a_forged_record_claiming_a_clock_of_2096_fails_closed_and_says_so(tmp_path):
    """A record whose own clock_max makes 10,000 ids dated 2096 plausible refuses every command (fail closed),
    and telemetry says why, naming the date and the file to remove."""
    seed(tmp_path, {"v": 2, "clock_max": 3976000000, "seen": {"f{}".format(i): 3976000000 for i in range(10000)}})
    guard = guard_at(tmp_path, Clock())
    assert not admitted(guard, "a", NOW, NOW)
    assert "the replay record is full" in guard.problem() and "2095-12-" in guard.problem()
    assert replay.FILE_NAME in guard.problem()


@pytest.mark.parametrize("content", [b"{broken", b"[1]", b'{"seen": [1]}', b"[" * 5000])
def test_an_unreadable_record_is_reported_and_commands_are_refused_while_its_ids_could_be_fresh(tmp_path, content):
    with open(os.path.join(str(tmp_path), replay.FILE_NAME), "wb") as f:
        f.write(content)
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    assert "is unusable" in guard.problem()
    with pytest.raises(Rejected, match="every command is refused until"):
        guard.admit("a", NOW, clock.wall)
    clock.advance(replay.KEEP + 1)
    assert admitted(guard, "b", clock.wall, clock.wall)


def test_malformed_entries_are_reported_and_the_rest_kept(tmp_path):
    seed(tmp_path, {"v": 2, "seen": {"a": "x", "b": None, "c": NOW, "d": 1e300}})
    guard = guard_at(tmp_path, Clock())
    assert "3 entries that are not an id and a time" in guard.problem()
    assert not admitted(guard, "c", NOW, NOW)


def record_cannot_be_written(folder, how):
    path = os.path.join(str(folder), replay.FILE_NAME)
    if how == "folder":
        os.makedirs(path)
    else:
        os.mkfifo(path)


@pytest.mark.parametrize("how", ["folder", "fifo"])
def test_a_command_whose_id_cannot_be_saved_is_refused(tmp_path, how):
    """Issue 18: the same signed command ran again after a restart when the record could not be written."""
    record_cannot_be_written(tmp_path, how)
    clock = Clock()
    guard = guard_at(tmp_path, clock)
    with pytest.raises(Rejected, match="is unusable"):     # the first 2 min: its ids could be fresh
        guard.admit("a", NOW, clock.wall)
    clock.advance(replay.KEEP + 1)
    with pytest.raises(Rejected, match="cannot save the replay record"):
        guard.admit("a", clock.wall, clock.wall)
    assert "commands are refused until it can be saved" in guard.problem()
    clock.advance(1)
    with pytest.raises(Rejected):
        guard.admit("a", clock.wall, clock.wall)


SUBPROCESS_ADMIT = """
import sys
from appliance.remote.envelope import Rejected
from appliance.remote.replay import ReplayGuard
guard = ReplayGuard(sys.argv[1], now={now})
try:
    guard.admit("a", {now}, {now})
    print("admitted")
except Rejected as exc:
    print("refused:", exc)
""".format(now=NOW)


@pytest.mark.parametrize("how, reason", [
    ("mount -o remount,ro {m}", "read-only file system"),
    ("dd if=/dev/zero of={m}/filler bs=4k 2>/dev/null || true", "no space left on device"),
])
def test_a_read_only_or_full_file_system_refuses_the_command(tmp_path, how, reason):
    refused = namespaces_refused()
    if refused:
        pytest.skip(refused)
    mountpoint = tmp_path / "state"
    mountpoint.mkdir()
    script = "set -e; mount -t tmpfs -o size=64k tmpfs {m}; {how}; exec {python} -c {code} {m}".format(
        m=mountpoint, how=how.format(m=mountpoint), python=sys.executable,
        code="'" + SUBPROCESS_ADMIT.replace("'", "'\"'\"'") + "'")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: cannot save the replay record"), done.stdout
    assert reason in done.stdout.lower()


def replays_admitted(folder, prepare, steps):
    """Admit id "a" once, run `steps` on the clock, then count how often "a" is admitted again."""
    clock = Clock()
    prepare(folder)
    guard = guard_at(folder, clock)
    clock.advance(replay.KEEP + 1)   # past a start-up quarantine, if the record was unreadable
    admitted(guard, "a", clock.wall, clock.wall)
    ts = clock.wall
    again = 0
    for step in steps:
        step(clock)
        again += admitted(guard, "a", ts, clock.wall)
        again += admitted(guard_at(folder, clock), "a", ts, clock.wall)   # and after a restart
    return again


def test_no_replay_runs_under_any_record_or_clock_fault_and_the_count_is_recorded(tmp_path):
    from figures import record
    faults = {
        "record is a folder": lambda folder: record_cannot_be_written(folder, "folder"),
        "record is a FIFO": lambda folder: record_cannot_be_written(folder, "fifo"),
        "record seeded with 10000 ids from 2096": lambda folder: seed(
            folder, {"v": 1, "seen": {"f{}".format(i): 3980000000.0 + i for i in range(10000)}}),
        "record not JSON": lambda folder: (folder / replay.FILE_NAME).write_bytes(b"{broken"),
        "no fault": lambda folder: None,
    }
    clocks = {"+150 s then back": [lambda c: c.step(150), lambda c: c.step(-150)],
              "-150 s then forward": [lambda c: c.step(-150), lambda c: c.step(150)],
              "steady 30 s": [lambda c: c.advance(30)]}
    executed = {}
    for fault, prepare in faults.items():
        for name, steps in clocks.items():
            folder = tmp_path / "{}-{}".format(len(executed), name.split()[0])
            folder.mkdir()
            executed["{}, clock {}".format(fault, name)] = replays_admitted(folder, prepare, steps)
    assert sum(executed.values()) == 0, executed
    record("replays under record and clock faults", cases=len(executed), replays_executed=sum(executed.values()))
