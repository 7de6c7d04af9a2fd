import json
import os

from appliance.remote import replay
from appliance.remote.replay import ReplayGuard

NOW = 1795320000.0


def test_an_id_is_admitted_once(tmp_path):
    guard = ReplayGuard(str(tmp_path))
    assert guard.admit("a", NOW, NOW) and not guard.admit("a", NOW, NOW + 1)
    assert guard.admit("b", NOW, NOW + 1)


def test_a_replay_is_refused_after_a_restart(tmp_path):
    ReplayGuard(str(tmp_path)).admit("a", NOW, NOW)
    assert not ReplayGuard(str(tmp_path)).admit("a", NOW, NOW + 30)


def test_ids_are_forgotten_once_their_ts_could_no_longer_be_accepted(tmp_path):
    guard = ReplayGuard(str(tmp_path))
    guard.admit("old", NOW, NOW)
    guard.admit("new", NOW + 500, NOW + 500)
    with open(guard.path) as f:
        assert set(json.load(f)["seen"]) == {"new"}


def test_the_record_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(replay, "MAX_IDS", 5)
    guard = ReplayGuard(str(tmp_path))
    for index in range(20):
        assert guard.admit("id{}".format(index), NOW + index * 0.001, NOW)
    with open(guard.path) as f:
        assert sorted(json.load(f)["seen"]) == ["id15", "id16", "id17", "id18", "id19"]


def test_a_damaged_record_is_reported_and_replaced(tmp_path, caplog):
    for content in (b"{broken", b"[1]", b'{"seen": {"a": "x"}}'):
        with open(os.path.join(str(tmp_path), replay.FILE_NAME), "wb") as f:
            f.write(content)
        guard = ReplayGuard(str(tmp_path))
        assert guard.admit("a", NOW, NOW)
    assert caplog.text.count("unusable") == 3


def test_a_record_that_cannot_be_saved_is_reported(tmp_path):
    os.makedirs(os.path.join(str(tmp_path), replay.FILE_NAME))
    guard = ReplayGuard(str(tmp_path))
    assert guard.admit("a", NOW, NOW) and not guard.admit("a", NOW, NOW)
    assert "cannot save the replay record" in guard.save_error
