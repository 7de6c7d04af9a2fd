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
