import json
import os

import pytest

from appliance.engine.store import EngineRejected, EngineStore

INPUTS = {"model": "m", "precision": "fp32"}


@pytest.fixture
def store(tmp_path):
    return EngineStore(str(tmp_path / "cache"))


def install(store, data=b"engine-bytes" * 100, inputs=INPUTS):
    temp = store.temp_path("e")
    with open(temp, "wb") as f:
        f.write(data)
    return store.install("e", temp, {"key_inputs": inputs, "precision": "fp32"})


def test_install_writes_the_engine_then_a_sidecar_with_its_size_and_sha256(store):
    sidecar = install(store)
    assert os.path.getsize(store.engine_path("e")) == sidecar["size"] == 1200
    with open(store.sidecar_path("e")) as f:
        assert json.load(f)["sha256"] == sidecar["sha256"]
    assert store.verified("e", INPUTS)["size"] == 1200
    assert not [n for n in os.listdir(store.directory) if ".tmp-" in n]


def test_a_truncated_engine_is_rejected(store):
    install(store)
    with open(store.engine_path("e"), "r+b") as f:
        f.truncate(600)
    with pytest.raises(EngineRejected, match="truncated"):
        store.verified("e", INPUTS)


def test_a_bit_flipped_engine_is_rejected(store):
    install(store)
    with open(store.engine_path("e"), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(EngineRejected, match="corrupted"):
        store.verified("e", INPUTS)


def test_an_engine_without_a_sidecar_is_an_interrupted_build(store):
    install(store)
    os.unlink(store.sidecar_path("e"))
    with pytest.raises(EngineRejected, match="interrupted build"):
        store.verified("e", INPUTS)


def test_an_engine_of_other_key_inputs_is_rejected(store):
    install(store)
    with pytest.raises(EngineRejected, match="key inputs differ"):
        store.verified("e", dict(INPUTS, precision="int8"))


def test_stale_temp_files_are_removed(store):
    leftover = store.temp_path("e")
    assert store.remove_stale_temps() == [leftover]
    assert not os.path.exists(leftover)


def test_an_unwritable_cache_says_which_key_to_set(tmp_path):
    from appliance.engine.store import StoreError
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(StoreError, match="engine.cache_dir"):
        EngineStore(str(blocked / "engines"))


@pytest.mark.parametrize("content, reason", [
    (b"[1, 2, 3]", "sidecar not valid: the record must be a JSON object, not an array"),
    (b"\"text\"", "sidecar not valid: the record must be a JSON object, not a string"),
    (b"{not json", "sidecar not valid: the record is not JSON"),
    (b"\xff\xfe", "sidecar not valid: the record is not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "sidecar not valid: the record nests 100000 levels deep"),
    (b'{"built_at": 1' + b"0" * 5000 + b"}", "sidecar not valid: the record: an integer of 5001 digits"),
    (b'{"a": 1, "a": 2}', "sidecar not valid: the record: the key a appears twice"),
])
def test_a_sidecar_that_is_not_a_json_object_is_rejected_and_listed_broken(store, content, reason):
    install(store)
    with open(store.sidecar_path("e"), "wb") as f:
        f.write(content)
    with pytest.raises(EngineRejected, match=reason):
        store.verified("e", INPUTS)
    [entry] = store.entries()
    assert entry["name"] == "e" and entry["broken"].startswith(reason)


@pytest.mark.parametrize("field, value", [("size", "1200"), ("size", None), ("sha256", 12), ("key_inputs", [])])
def test_sidecar_fields_of_the_wrong_type_are_rejected(store, field, value):
    install(store)
    with open(store.sidecar_path("e")) as f:
        sidecar = json.load(f)
    sidecar[field] = value
    with open(store.sidecar_path("e"), "w") as f:
        json.dump(sidecar, f)
    with pytest.raises(EngineRejected):
        store.verified("e", INPUTS)


def test_folders_where_files_belong_are_rejected_then_replaced(store):
    os.makedirs(store.engine_path("e"))
    os.makedirs(os.path.join(store.directory, "active.json"))
    os.makedirs(os.path.join(store.directory, ".lock"))
    with store.locked():
        assert store.active() is None
        with pytest.raises(EngineRejected, match="no engine cached|without a sidecar"):
            store.verified("e", INPUTS)
        install(store)
        assert store.verified("e", INPUTS)["size"] == 1200
        assert store.set_active("e") and store.active() == "e"
    os.unlink(store.sidecar_path("e"))
    os.makedirs(store.sidecar_path("e"))
    with pytest.raises(EngineRejected, match="sidecar unreadable: .* is a folder"):
        store.verified("e", INPUTS)


@pytest.mark.parametrize("content", [b"[]", b"{\"engine\": 5}", b"{\"engine\": [\"e\"]}", b"\x00", b""])
def test_an_active_record_of_another_shape_means_none(store, content):
    with open(os.path.join(store.directory, "active.json"), "wb") as f:
        f.write(content)
    assert store.active() is None
    assert store.set_active("e") and store.active() == "e"


def test_a_reinstall_never_leaves_a_sidecar_describing_another_engine(store, monkeypatch):
    """Between the old sidecar's removal and the new one's write, the engine has no sidecar at all."""
    install(store, data=b"old" * 400)
    from appliance import files
    seen = []
    real_install = files.atomic_install

    def watching_install(temp, path):
        seen.append(os.path.exists(store.sidecar_path("e")))
        real_install(temp, path)
    monkeypatch.setattr(files, "atomic_install", watching_install)
    install(store, data=b"new" * 400)
    assert seen == [False]
    assert store.verified("e", INPUTS)["size"] == 1200


def test_a_disk_that_refuses_the_active_record_does_not_stop_the_engine(store, monkeypatch, caplog):
    from appliance import files

    def full_disk(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files, "atomic_write_bytes", full_disk)
    assert store.set_active("e") is False
    assert "no space left on device" in caplog.text


@pytest.mark.parametrize("folder", ["c?", "c*", "c[x]"])
def test_a_cache_whose_name_holds_glob_characters_touches_nothing_outside_it(tmp_path, folder):
    sibling = tmp_path / "cz"
    (sibling / "photos.tmp-2024").mkdir(parents=True)
    (sibling / "report.tmp-final").write_text("keep me")
    (sibling / "settings.json").write_text("{}")
    store = EngineStore(str(tmp_path / folder))
    install(store)
    leftover = store.temp_path("e")
    assert store.remove_stale_temps() == [leftover]
    assert [e["name"] for e in store.entries()] == ["e"]
    assert sorted(os.listdir(str(sibling))) == ["photos.tmp-2024", "report.tmp-final", "settings.json"]


def test_an_entry_whose_engine_file_is_missing_is_listed_broken(store):
    install(store)
    os.unlink(store.engine_path("e"))
    assert store.entries()[0]["broken"] == "its engine file is missing or not a regular file"


def test_waiting_for_another_builder_names_it_and_a_stop_ends_the_wait(store):
    import subprocess
    import sys
    import threading
    from appliance.errors import Cancelled
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "f.truncate(0); f.write(str(os.getpid())); f.flush(); print('held', flush=True)\n"
                               "time.sleep(60)\n", os.path.join(store.directory, ".lock")],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert holder.stdout.readline() == "held\n"
        cancel = threading.Event()
        waits = []

        def waiting(seconds, pid):
            waits.append(pid)
            if len(waits) == 3:
                cancel.set()
        with pytest.raises(Cancelled, match="which process {} holds".format(holder.pid)):
            with store.locked(cancel, waiting):
                pass
        assert waits == [str(holder.pid)] * 3
    finally:
        holder.kill()
        holder.wait()
    with store.locked():
        pass
