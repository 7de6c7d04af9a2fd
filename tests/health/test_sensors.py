"""Host health (appliance/health/, through appliance.host): what a telemetry subscriber sees in the sample and
what the log says, from jetson-stats (the fake of tests/fakes/jtop/: 4.2.12 and 7.2.0, Nano and Orin) and from
psutil + sysfs (tests/data/sysfs/nano and orin, and this host)."""
import logging
import os
import shutil
import sys

import psutil
import pytest

from appliance.health import PsutilHost, open_host_sensors
from conftest import TESTS

HERE = TESTS
FAKES = os.path.join(HERE, "fakes")
SYSFS = os.path.join(HERE, "data", "sysfs")
NANO, ORIN = os.path.join(SYSFS, "nano"), os.path.join(SYSFS, "orin")
MB = 2 ** 20
KEYS = {"source", "temperatures", "power", "power_mw", "cpu_percent", "gpu_percent", "emc_percent", "fan_percent",
        "nvpmodel", "jetson_clocks", "throttling", "ram", "swap", "disk", "load"}


def drop_fake():
    for name in [n for n in sys.modules if n == "jtop" or n.startswith("jtop.")]:
        sys.modules.pop(name, None)


@pytest.fixture
def fake_jtop(monkeypatch):
    """Makes `import jtop` find the fake; fake_jtop(version, board, service=, power=) sets what it plays."""
    monkeypatch.syspath_prepend(FAKES)
    drop_fake()

    def play(version="4.2.12", board="nano", service="up", power="ina3221"):
        for name, value in (("VERSION", version), ("BOARD", board), ("SERVICE", service), ("POWER", power)):
            monkeypatch.setenv("FAKE_JTOP_" + name, value)
        import jtop
        return jtop
    yield play
    drop_fake()


@pytest.fixture
def no_jtop(monkeypatch):
    """jetson-stats not installed, whatever this host has."""
    monkeypatch.setitem(sys.modules, "jtop", None)


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def copy_of(tmp_path, board):
    target = str(tmp_path / board)
    shutil.copytree(os.path.join(SYSFS, board), target)
    return target


def write(root, relative, text):
    with open(os.path.join(root, relative), "w") as f:
        f.write(text)


JTOP_CASES = {
    ("4.2.12", "nano"): dict(
        temperatures={"AO": 39.5, "CPU": 32.0, "GPU": 30.5, "PLL": 28.5, "thermal": 31.2},
        rails={"POM_5V_CPU": (320, 5040, 64), "POM_5V_GPU": (0, 5040, 0), "POM_5V_IN": (2003, 5056, 396)},
        total=2003, gpu=12.3, emc=3.0, fan=30.2, nvpmodel="MAXN", jetson_clocks=False, ram=(1409, 3964),
        swap=(0, 1982)),
    ("4.2.12", "orin-jp5"): dict(
        temperatures={"CPU": 47.5, "Composite": 38.9, "GPU": 46.8, "SOC0": 45.9, "SOC1": 46.3, "SOC2": 45.1,
                      "tj": 47.5},
        rails={"VDD_CPU_GPU_CV": (767, 5048, 152), "VDD_IN": (4926, 5048, 976), "VDD_SOC": (1453, 5048, 288)},
        total=4926, gpu=23.7, emc=12.0, fan=33.3, nvpmodel="15W", jetson_clocks=True, ram=(2304, 7619),
        swap=(0, 3809)),
}
JTOP_CASES[("7.2.0", "nano")] = JTOP_CASES[("4.2.12", "nano")]
JTOP_CASES[("7.2.0", "orin")] = dict(JTOP_CASES[("4.2.12", "orin-jp5")], temperatures={
    "cpu": 47.5, "gpu": 46.8, "nvmeComposite": 38.9, "soc0": 45.9, "soc1": 46.3, "soc2": 45.1, "tj": 47.5})


@pytest.mark.parametrize("version,board", sorted(JTOP_CASES), ids="-".join)
def test_jtop_gives_every_field(fake_jtop, tmp_path, caplog, version, board):
    fake_jtop(version, board)
    want = JTOP_CASES[(version, board)]
    host = open_host_sensors(str(tmp_path), root=ORIN if board.startswith("orin") else NANO)
    try:
        sample = host.sample()
    finally:
        host.close()
    assert host.name == sample["source"] == "jtop"
    assert sample["temperatures"] == want["temperatures"]
    rails = dict((name, (r["power_mw"], r["voltage_mv"], r["current_ma"])) for name, r in
                 sample["power"]["rails"].items())
    assert rails == want["rails"]
    assert sample["power"]["total_mw"] == sample["power_mw"] == want["total"]
    assert (sample["gpu_percent"], sample["emc_percent"], sample["fan_percent"]) == (want["gpu"], want["emc"],
                                                                                     want["fan"])
    assert (sample["nvpmodel"], sample["jetson_clocks"]) == (want["nvpmodel"], want["jetson_clocks"])
    assert (sample["ram"]["used_mb"], sample["ram"]["total_mb"]) == want["ram"]
    assert (sample["swap"]["used_mb"], sample["swap"]["total_mb"]) == want["swap"]
    assert sample["throttling"] == {"thermal": False, "power": False if board.startswith("orin") else None}
    assert 0.0 <= sample["cpu_percent"] <= 100.0 and sample["disk"]["path"] == str(tmp_path)
    assert warnings_in(caplog) == []


def test_both_sources_give_the_same_keys_old_ones_included(fake_jtop, tmp_path):
    fake_jtop("7.2.0", "orin")
    host = open_host_sensors(str(tmp_path), root=ORIN)
    try:
        from_jtop = host.sample()
    finally:
        host.close()
    from_sysfs = PsutilHost(str(tmp_path), root=ORIN).sample()
    assert set(from_jtop) == set(from_sysfs) == KEYS
    assert set(from_jtop["power"]) == set(from_sysfs["power"]) == {"rails", "total_mw"}
    assert set(from_jtop["disk"]) == {"path", "free_mb", "percent"}
    assert set(from_jtop["ram"]) == set(from_jtop["swap"]) == {"used_mb", "total_mb"}


def test_sensors_that_read_off_are_left_out(fake_jtop, tmp_path):
    fake_jtop("7.2.0", "orin")  # cv0..cv2 are -256 / online False on an Orin Nano
    host = open_host_sensors(str(tmp_path), root=ORIN)
    try:
        from_jtop = host.sample()["temperatures"]
    finally:
        host.close()
    from_sysfs = PsutilHost(str(tmp_path), root=ORIN).sample()["temperatures"]
    assert not [name for name in from_jtop if name.startswith("cv")]
    assert not [name for name in from_sysfs if name.startswith("cv")]
    assert from_jtop["cpu"] == from_sysfs["cpu-thermal"] == 47.5


def test_a_board_without_power_monitors_has_no_rails(fake_jtop, tmp_path, caplog):
    fake_jtop("4.2.12", "nano", power="none")  # jtop.power == {}
    host = open_host_sensors(str(tmp_path), root=NANO)
    try:
        sample = host.sample()
    finally:
        host.close()
    assert sample["source"] == "jtop"
    assert sample["power"] == {"rails": {}, "total_mw": None} and sample["power_mw"] is None
    assert sample["gpu_percent"] == 12.3 and sample["temperatures"]["CPU"] == 32.0
    assert warnings_in(caplog) == []


def test_the_input_rail_is_the_total_whatever_the_case_of_its_name(fake_jtop, tmp_path):
    jtop = fake_jtop("7.2.0", "orin")

    def lower_case_input_rail(data):  # jtop matches VDD_IN exactly, so it would have summed the rails
        tot = data["power"].pop("tot")
        del tot["name"]
        data["power"]["rail"]["vdd_in"] = dict(tot)
        data["power"]["tot"] = {"power": sum(r["power"] for r in data["power"]["rail"].values())}
    host = open_host_sensors(str(tmp_path), root=ORIN)
    try:
        jtop.INSTANCES[-1].mutate(lower_case_input_rail)
        from_jtop = host.sample()["power"]
    finally:
        host.close()
    root = copy_of(tmp_path, "orin")
    write(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in1_label", "vdd_in\n")
    from_sysfs = PsutilHost(str(tmp_path), root=root).sample()["power"]
    assert from_jtop["total_mw"] == from_jtop["rails"]["vdd_in"]["power_mw"] == 4926
    assert from_sysfs["total_mw"] == from_sysfs["rails"]["vdd_in"]["power_mw"] == 4927


@pytest.mark.parametrize("service,reason", [("down", "The jtop.service is not active"),
                                            ("denied", "I can't access jtop.service")])
def test_jtop_service_unusable_falls_back_to_sysfs_saying_why_once(fake_jtop, tmp_path, caplog, service, reason):
    fake_jtop("4.2.12", "nano", service=service)
    host = open_host_sensors(str(tmp_path), root=NANO)
    samples = [host.sample() for _ in range(5)]
    host.close()
    assert host.name == "psutil" and {s["source"] for s in samples} == {"psutil"}
    assert samples[-1]["temperatures"]["CPU-therm"] == 32.0 and samples[-1]["power_mw"] == 2003
    warned = warnings_in(caplog)
    assert len(warned) == 1, warned
    assert "jtop.service" in warned[0] and reason in warned[0] and "\n" not in warned[0]


def test_one_jtop_connection_serves_every_sample_and_close_closes_it(fake_jtop, tmp_path):
    jtop = fake_jtop("7.2.0", "orin")
    host = open_host_sensors(str(tmp_path), root=ORIN)
    for _ in range(10):
        assert host.sample()["source"] == "jtop"
    assert len(jtop.INSTANCES) == 1 and jtop.INSTANCES[0].start_calls == 1
    assert jtop.INSTANCES[0].close_calls == 0
    host.close()
    host.close()
    assert jtop.INSTANCES[0].close_calls == 1 and not jtop.INSTANCES[0].ok(spin=True)


def test_a_lost_jtop_connection_moves_to_sysfs_saying_so_once(fake_jtop, tmp_path, caplog):
    jtop = fake_jtop("4.2.12", "nano")
    host = open_host_sensors(str(tmp_path), root=NANO)
    assert host.sample()["source"] == "jtop"
    jtop.INSTANCES[0].lose_connection()
    samples = [host.sample() for _ in range(4)]
    assert host.name == "psutil" and {s["source"] for s in samples} == {"psutil"}
    assert samples[-1]["temperatures"]["GPU-therm"] == 30.5
    warned = warnings_in(caplog)
    assert len(warned) == 1 and "Lost connection with jtop server" in warned[0], warned
    assert jtop.INSTANCES[0].close_calls == 1
    host.close()
    assert jtop.INSTANCES[0].close_calls == 1


SYSFS_CASES = {
    "nano": dict(
        temperatures={"AO-therm": 39.5, "CPU-therm": 32.0, "GPU-therm": 30.5, "PLL-therm": 28.5, "PMIC-Die": 50.0,
                      "thermal-fan-est": 31.2},
        rails={"POM_5V_CPU": (320, 5040, 64), "POM_5V_GPU": (0, 5040, 0), "POM_5V_IN": (2003, 5056, 396)},
        total=2003, gpu=12.3, fan=30.2, nvpmodel="MAXN", jetson_clocks=False,
        throttling={"thermal": False, "power": None}),
    "orin": dict(
        temperatures={"cpu-thermal": 47.5, "gpu-thermal": 46.8, "soc0-thermal": 45.9, "soc1-thermal": 46.3,
                      "soc2-thermal": 45.1, "tj-thermal": 47.5},
        rails={"VDD_CPU_GPU_CV": (767, 5048, 152), "VDD_IN": (4927, 5048, 976), "VDD_SOC": (1454, 5048, 288)},
        total=4927, gpu=23.7, fan=33.3, nvpmodel="15W", jetson_clocks=True,
        throttling={"thermal": False, "power": False}),
}


@pytest.mark.parametrize("board", sorted(SYSFS_CASES))
def test_sysfs_gives_every_field(no_jtop, tmp_path, caplog, board):
    want = SYSFS_CASES[board]
    host = open_host_sensors(str(tmp_path), root=os.path.join(SYSFS, board))
    sample = host.sample()
    assert host.name == sample["source"] == "psutil"
    assert sample["temperatures"] == want["temperatures"]
    rails = dict((name, (r["power_mw"], r["voltage_mv"], r["current_ma"])) for name, r in
                 sample["power"]["rails"].items())
    assert rails == want["rails"]
    assert sample["power"]["total_mw"] == sample["power_mw"] == want["total"]
    assert (sample["gpu_percent"], sample["fan_percent"], sample["emc_percent"]) == (want["gpu"], want["fan"], None)
    assert (sample["nvpmodel"], sample["jetson_clocks"]) == (want["nvpmodel"], want["jetson_clocks"])
    assert sample["throttling"] == want["throttling"]
    assert warnings_in(caplog) == []


def test_throttling_shows_at_a_passive_trip_point_and_at_a_current_alert(tmp_path):
    nano, orin = copy_of(tmp_path, "nano"), copy_of(tmp_path, "orin")
    write(nano, "sys/class/thermal/thermal_zone3/temp", "70500\n")  # PLL-therm past dram-throttle (passive, 70 C)
    write(orin, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr1_max_alarm", "1\n")  # VDD_IN warning alert
    assert PsutilHost(str(tmp_path), root=nano).sample()["throttling"] == {"thermal": True, "power": None}
    assert PsutilHost(str(tmp_path), root=orin).sample()["throttling"] == {"thermal": False, "power": True}


def test_a_missing_or_garbled_file_gives_none_for_its_field(tmp_path):
    root = copy_of(tmp_path, "nano")
    write(root, "sys/devices/gpu.0/load", "n/a\n")
    os.remove(os.path.join(root, "sys/devices/pwm-fan/target_pwm"))
    write(root, "etc/nvpmodel.conf", "\x00\xff garbage\n")
    write(root, "sys/class/thermal/thermal_zone1/temp", "")
    write(root, "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_voltage2_input", "-\n")
    os.remove(os.path.join(root, "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"))
    sample = PsutilHost(str(tmp_path), root=root).sample()
    assert (sample["gpu_percent"], sample["fan_percent"], sample["nvpmodel"], sample["jetson_clocks"]) == (
        None, None, None, None)
    assert "CPU-therm" not in sample["temperatures"] and sample["temperatures"]["GPU-therm"] == 30.5
    assert sample["power"]["rails"]["POM_5V_CPU"] == {"power_mw": 320, "voltage_mv": None, "current_ma": 64}
    assert sample["power_mw"] == 2003


@pytest.mark.parametrize("board", ["nano", "orin"])
def test_no_sysfs_file_missing_or_garbled_makes_a_sample_raise(tmp_path, board):
    root = copy_of(tmp_path, board)
    files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
    host = PsutilHost(str(tmp_path), root=root)
    for path in files:
        with open(path, "rb") as f:
            original = f.read()
        for damage in (b"", b"\xff\xfe garbled \x00", b"-1\n", b"99999999999999999999999\n", None):
            if damage is None:
                os.remove(path)
            else:
                with open(path, "wb") as f:
                    f.write(damage)
            assert set(host.sample()) == KEYS, path
        with open(path, "wb") as f:
            f.write(original)


def test_psutil_fields_describe_this_host(no_jtop, tmp_path):
    host = open_host_sensors(str(tmp_path), root=str(tmp_path))  # no sysfs there: the Jetson fields are None
    host.sample()
    sample = host.sample()
    assert sample["source"] == "psutil"
    assert isinstance(sample["cpu_percent"], float) and 0.0 <= sample["cpu_percent"] <= 100.0
    assert sample["ram"]["total_mb"] == psutil.virtual_memory().total // MB
    assert 0 < sample["ram"]["used_mb"] < sample["ram"]["total_mb"]
    assert sample["swap"]["total_mb"] == psutil.swap_memory().total // MB
    assert sample["disk"]["path"] == str(tmp_path) and sample["disk"]["free_mb"] > 0
    assert 0.0 <= sample["disk"]["percent"] <= 100.0
    assert len(sample["load"]) == 3 and all(v >= 0 for v in sample["load"])
    assert sample["temperatures"] == {} and sample["power"] == {"rails": {}, "total_mw": None}
    assert [sample[k] for k in ("gpu_percent", "emc_percent", "fan_percent", "nvpmodel", "jetson_clocks")] == [
        None] * 5
    assert sample["throttling"] == {"thermal": None, "power": None}


def test_the_disk_of_a_folder_not_made_yet_is_unknown(no_jtop, tmp_path):
    missing = str(tmp_path / "engines")
    sample = open_host_sensors(missing, root=NANO).sample()
    assert sample["disk"] == {"path": missing, "free_mb": None, "percent": None}


def test_a_fifo_or_an_absurd_number_in_sysfs_costs_only_that_field(no_jtop, tmp_path):
    nano = copy_of(tmp_path, "nano")
    os.remove(os.path.join(nano, "etc", "nvpmodel.conf"))
    os.mkfifo(os.path.join(nano, "etc", "nvpmodel.conf"))        # would block an open() for ever
    write(nano, "sys/class/thermal/thermal_zone3/temp", "9" * 400 + "\n")
    sample = open_host_sensors(str(tmp_path), root=nano).sample()
    assert sample["nvpmodel"] is None
    expected = dict(SYSFS_CASES["nano"]["temperatures"])
    expected.pop([name for name in expected if name.upper().startswith("PLL")][0])
    assert sample["temperatures"] == expected
