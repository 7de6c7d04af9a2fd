from appliance.rebuild import BUILDER_OVERHEAD, choose_mode

MIB = 1 << 20


def test_auto_builds_hot_when_memory_holds_both_engines_the_workspace_and_the_builder():
    needed = 2 * 30 * MIB + 256 * MIB + BUILDER_OVERHEAD
    assert choose_mode("auto", 30 * MIB, 256, needed)[0] == "hot"
    mode, why = choose_mode("auto", 30 * MIB, 256, needed - 1)
    assert mode == "paused" and "about 1.1 GiB needed" in why


def test_a_4_gb_nano_with_its_desktop_pauses_and_without_it_builds_hot():
    """A Nano's MemAvailable is about 1.0-1.5 GB with the desktop, 2.5-3 GB without (one engine ~ 10 MB)."""
    assert choose_mode("auto", 10 * MIB, 256, 1000 * MIB)[0] == "paused"
    assert choose_mode("auto", 10 * MIB, 256, 2500 * MIB)[0] == "hot"


def test_a_forced_mode_is_kept_and_said():
    assert choose_mode("paused", 1, 16, 1 << 40) == ("paused", "engine.rebuild_mode = paused")
