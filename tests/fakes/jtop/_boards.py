"""What jtop.service sends the jtop client (`data` in jtop/service.py, kept as `jtop._stats`), per jetson-stats
version and board. The shapes are those of jetson-stats' own code; the numbers are plausible idle readings of a
Jetson Nano developer kit (JetPack 4.6, L4T 32.7) and an Orin Nano 8GB developer kit (JetPack 6, L4T 36; and
JetPack 5, L4T 35, as "orin-jp5"). Sources, rbonghi/jetson_stats at tags 4.2.12 and 7.2.0:

- temperature: jtop/core/temperature.py TemperatureService.get_status -> {name: {'temp', 'online'}} (+ 'max',
  'crit' for hwmon sensors); name = the zone type up to its first '-' (or '_'); PMIC zones skipped; sorted by
  lower-case name; -256 (TEMPERATURE_OFFLINE) with online False for a sensor that cannot be read. 7.2.0 only:
  hwmon sensors are named device name + label ("nvme" + "Composite").
- power: jtop/core/power.py PowerService.get_status -> {'rail': {name: {...}}, 'tot': {...}}, or {} with no
  monitor. Rail keys in order volt, curr, [power], [warn], [crit], then online, avg; 'power' read from in_powerN
  (L4T 32) or int(volt * curr / 1000); total_power() moves POM_5V_IN / VDD_IN into 'tot' with 'name'. Same in
  both tags.
- gpu: jtop/core/gpu.py GPUService.get_status -> {of_node name: {'type', 'status', 'freq', 'power_control'}};
  status has a key per file present (railgate, tpc_pg_mask, 3d_scaling, load = load / 10); 7.2.0 always has
  '3d_scaling'. freq in kHz; 'GPC' only where bpmp debugfs has nafll_gpc* (Orin).
- mem: jtop/core/memory.py MemoryService.get_status -> {'RAM', 'SWAP', ['EMC'], ['IRAM']}, sizes in kB;
  7.2.0 adds RAM['shared_label'].
- fan: jtop/core/fan.py FanService.get_status -> {name: {'speed': [0..100], 'rpm': [...], 'profile', ...}};
  speed = PWMtoValue(pwm) = pwm * 100 / 255; L4T 32: legacy /sys/devices/pwm-fan (profile temp_control);
  L4T 35+: hwmon "pwmfan" + nvfancontrol -q fields (profile, governor, control).
- nvp / jc: jtop/core/nvpmodel.py NVPModelService.get_status, jtop/core/jetson_clocks.py
  JetsonClocksService.get_status; init['nvpmodel'] from service.py.
- cpu, engines, uptime: jtop/core/cpu.py, jtop/core/engine.py, service.py.
"""
import copy


def _rail(volt, curr, warn, crit, power=None):
    rail = {"volt": volt, "curr": curr}
    if power is not None:  # L4T 32 (ina3221x) has in_powerN_input
        rail["power"] = power
    rail["warn"], rail["crit"] = warn, crit
    if power is None:
        rail["power"] = int(volt * (float(curr) / 1000))
    rail["online"] = True
    rail["avg"] = rail["power"]
    return rail


def _cpu(cores, governor, low, high, cur, idle):
    entry = {"online": True, "governor": governor, "freq": {"min": low, "max": high, "cur": cur},
             "info_freq": {"min": low, "max": high, "cur": cur}, "idle_state": {"WFI": 1, "c7": 1},
             "user": 3.0, "nice": 0.0, "system": 2.0, "idle": idle, "model": "ARMv8 Processor rev 1 (v8l)"}
    return {"total": {"user": 3.0, "nice": 0.0, "system": 2.0, "idle": idle},
            "cpu": [copy.deepcopy(entry) for _ in range(cores)]}


def _off():
    return {"temp": -256, "online": False}


def _on(celsius):
    return {"temp": celsius, "online": True}


def nano(version):
    """Jetson Nano 4GB developer kit, JetPack 4.6 (L4T 32.7.x). jetson-stats 7.x needs Python >= 3.7 and
    JetPack 4 has 3.6, so the 7.x case is hypothetical: the shapes of 7.x with this board's sensors."""
    power = {"rail": {"POM_5V_CPU": _rail(5040, 64, 32760, 32760, power=320),
                      "POM_5V_GPU": _rail(5040, 0, 32760, 32760, power=0)},
             "tot": dict(_rail(5056, 396, 32760, 32760, power=2003), name="POM_5V_IN")}
    ram = {"tot": 4059272, "used": 1442816, "free": 1812345, "buffers": 67012, "cached": 623136,
           "shared": 45136, "lfb": 28}
    if version >= (7, 0):
        ram["shared_label"] = "Shared"
    return {
        "uptime": 3725.4,
        "cpu": _cpu(4, "schedutil", 102000, 1479000, 1479000, 95.0),
        "gpu": {"gpu": {"type": "integrated",
                        "status": {"railgate": True, "3d_scaling": True, "load": 12.3},
                        "freq": {"governor": "nvhost_podgov", "cur": 76800, "max": 921600, "min": 76800},
                        "power_control": "auto"}},
        "processes": [],
        "mem": {"RAM": ram,
                "SWAP": {"tot": 2029632, "used": 0, "cached": 0,
                         "table": dict(("/dev/zram{}".format(i), {"type": "zram", "prio": 5, "size": 507408,
                                                                 "used": 0, "boot": False}) for i in range(4))},
                "EMC": {"cur": 1600000, "override": 0, "max": 1600000, "min": 204000, "val": 3, "online": True},
                "IRAM": {"tot": 252, "used": 0, "lfb": 252}},
        "engines": {"APE": {"APE": {"online": True, "cur": 25600}},
                    "NVDEC": {"NVDEC": {"online": False, "cur": 716800, "max": 716800, "min": 115200}},
                    "NVENC": {"NVENC": {"online": False, "cur": 716800, "max": 716800, "min": 115200}},
                    "NVJPG": {"NVJPG": {"online": False, "cur": 627200, "max": 627200, "min": 115200}}},
        # thermal zones AO-therm, CPU-therm, GPU-therm, PLL-therm, PMIC-Die (skipped), thermal-fan-est
        "temperature": {"AO": _on(39.5), "CPU": _on(32.0), "GPU": _on(30.5), "PLL": _on(28.5),
                        "thermal": _on(31.25)},
        "power": power,
        "fan": {"pwm-fan": {"speed": [77 * 100 / 255.0], "rpm": [1153], "profile": "temp_control"}},
        "jc": {"enable": False, "thread": "inactive", "config": False, "boot": False},
        "nvp": {"status": [True, True], "thread": False, "model": {"name": "MAXN", "id": 0}},
        "init": {"nvpmodel": {"models": ["MAXN", "5W"], "default": {"name": "MAXN", "id": 0}}, "jc": True,
                 "board": {"hardware": {"Model": "NVIDIA Jetson Nano Developer Kit",
                                        "Module": "NVIDIA Jetson Nano (P3448-0000)", "L4T": "32.7.4",
                                        "Jetpack": "4.6.4"}}},
    }


def orin(version, jetpack=6):
    """Orin Nano 8GB developer kit: JetPack 6 (L4T 36.3) by default, JetPack 5 (L4T 35.5) with jetpack=5. The CV
    zones read off on an Orin Nano (it has no DLA/PVA cluster)."""
    if jetpack >= 6:  # thermal zone types cpu-thermal, gpu-thermal, cv0-thermal ... tj-thermal
        names = ["cpu", "cv0", "cv1", "cv2", "gpu", "soc0", "soc1", "soc2", "tj"]
        gpu_name, l4t, release = "gpu", "36.3.0", "6.0"
    else:  # CPU-therm, GPU-therm, CV0-therm ... tj-therm
        names = ["CPU", "CV0", "CV1", "CV2", "GPU", "SOC0", "SOC1", "SOC2", "tj"]
        gpu_name, l4t, release = "ga10b", "35.5.0", "5.1.3"
    readings = [47.5, None, None, None, 46.812, 45.937, 46.343, 45.125, 47.5]
    temperature = dict((n, _on(c) if c is not None else _off()) for n, c in zip(names, readings))
    nvme = {"temp": 38.85, "max": 84.85, "crit": 84.85, "online": True}
    temperature["nvmeComposite" if version >= (7, 0) else "Composite"] = nvme  # hwmon nvme, temp1_label
    temperature = dict(sorted(temperature.items(), key=lambda item: item[0].lower()))
    ram = {"tot": 7802616, "used": 2360124, "free": 3914568, "buffers": 40512, "cached": 1402212,
           "shared": 70212, "lfb": 612}
    if version >= (7, 0):
        ram["shared_label"] = "Shared"
    status = {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 23.7}
    return {
        "uptime": 86012.7,
        "cpu": _cpu(6, "schedutil", 729600, 1510400, 1510400, 91.0),
        "gpu": {gpu_name: {"type": "integrated", "status": status,
                           "freq": {"governor": "nvhost_podgov", "cur": 624750, "max": 624750, "min": 624750,
                                    "GPC": [624750, 624750]},
                           "power_control": "auto"}},
        "processes": [],
        "mem": {"RAM": ram,
                "SWAP": {"tot": 3901292, "used": 0, "cached": 0,
                         "table": dict(("/dev/zram{}".format(i), {"type": "zram", "prio": 5, "size": 650215,
                                                                 "used": 0, "boot": False}) for i in range(6))},
                "EMC": {"cur": 2133000, "max": 2133000, "min": 204000, "override": 0, "val": 12,
                        "online": True}},
        "engines": {"APE": {"APE": {"online": False, "cur": 200000}},
                    "NVDEC": {"NVDEC": {"online": False, "cur": 729600, "max": 729600, "min": 115200}},
                    "NVJPG": {"NVJPG": {"online": False, "cur": 499200, "max": 499200, "min": 115200},
                              "NVJPG1": {"online": False, "cur": 499200, "max": 499200, "min": 115200}},
                    "SE": {"SE": {"online": True, "cur": 729600, "max": 729600, "min": 115200}},
                    "VIC": {"VIC": {"online": False, "cur": 729600, "max": 729600, "min": 115200}}},
        "temperature": temperature,
        "power": {"rail": {"VDD_CPU_GPU_CV": _rail(5048, 152, 8000, 10000),
                           "VDD_SOC": _rail(5048, 288, 8000, 10000)},
                  "tot": dict(_rail(5048, 976, 5000, 6000), name="VDD_IN")},
        "fan": {"pwmfan": {"speed": [85 * 100 / 255.0], "rpm": [1766], "profile": "quiet", "governor": "pid",
                           "control": "close_loop"}},
        "jc": {"enable": True, "thread": "running", "config": True, "boot": False},
        "nvp": {"status": [True, True], "thread": False, "model": {"name": "15W", "id": 0}},
        "init": {"nvpmodel": {"models": ["15W", "7W"], "default": {"name": "15W", "id": 0}}, "jc": True,
                 "board": {"hardware": {"Model": "NVIDIA Jetson Orin Nano Developer Kit",
                                        "Module": "NVIDIA Jetson Orin Nano (Developer kit)",
                                        "L4T": l4t, "Jetpack": release}}},
    }


BOARDS = {"nano": nano, "orin": orin, "orin-jp5": lambda version: orin(version, jetpack=5)}
