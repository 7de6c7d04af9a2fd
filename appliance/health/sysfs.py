"""Host readings from sysfs and a few plain files, on a Jetson (L4T 32, 35, 36) and on any Linux host.

Every path is taken under `root` (default "/"), so tests point it at a fixture tree (tests/data/sysfs/).
Nothing here runs a command, and nothing raises: a file that is missing, unreadable or garbled gives None
for its field (or leaves its entry out of a mapping). The layouts are those jetson-stats reads
(jtop/core/{temperature,power,gpu,fan,nvpmodel}.py) and the L4T kernel's (thermal zones, INA3221 drivers).
"""
import glob
import logging
import os
import re

from appliance import files

log = logging.getLogger(__name__)

OFF_C = -256.0  # jetson-stats' value for a sensor that is off (and what some L4T zones read then)
THROTTLING_TRIPS = ("passive", "hot", "critical")  # "active" trips drive fans and DVFS floors, not throttling
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # the board's input rail, where there is one (as jetson-stats takes it)
GPU_LOAD_FILES = (  # per-mille; the first that reads wins
    "sys/devices/gpu.0/load",  # Nano, TX1, TX2, Xavier (L4T 32)
    "sys/devices/platform/gpu.0/load",  # Orin, L4T 36 (a link to bus@0/17000000.gpu)
    "sys/devices/platform/bus@0/17000000.gpu/load",
    "sys/devices/17000000.ga10b/load",  # Orin, L4T 35
    "sys/devices/platform/17000000.ga10b/load",
    "sys/devices/17000000.gv11b/load",  # Xavier
    "sys/devices/platform/17000000.gv11b/load",
    "sys/devices/57000000.gpu/load",  # Nano, TX1
    "sys/devices/17000000.gp10b/load",  # TX2
)
GPU_DEVFREQ_NAMES = (".gpu", ".ga10b", ".gv11b", ".gp10b", ".gb10b")  # /sys/class/devfreq/<unit address>.<name>
FAN_PWM_MAX = 255.0
NVPMODEL_MODE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", re.IGNORECASE)
NVPMODEL_DEFAULT = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)", re.IGNORECASE)
NVPMODEL_STATUS = re.compile(r"pmode:\s*(\d+)", re.IGNORECASE)
TRAILING_NUMBER = re.compile(r"(\d+)$")
MAX_FILE_BYTES = 256 * 1024   # /etc/nvpmodel.conf is the largest file read (tens of KB)
MAX_READING = 10 ** 12        # larger is garbage (and would overflow a float)


def read_text(path):
    """A regular file's text, opened without blocking and capped: a FIFO or a device in its place, or a
    file that never ends, is refused (ValueError) instead of hanging the sample."""
    try:
        data = files.read_regular_file(path, MAX_FILE_BYTES)
    except files.FileRefused as exc:
        raise ValueError(str(exc))
    return data.decode("utf-8", "replace").strip().rstrip("\x00").strip()


def read_number(path):
    """The first word of a sysfs value as an int ("5072", "32760 ma"); raises on anything else."""
    value = int(read_text(path).split()[0][:20])
    if abs(value) > MAX_READING:
        raise ValueError("{}: {} is no sensor reading".format(path, value))
    return value


def guarded(read, default=None):
    """read(), or `default` if it raises: one unreadable sensor must not cost the whole sample."""
    try:
        return read()
    except Exception as exc:  # sensors and sensor libraries fail in many ways; the field is then unknown
        log.debug("host sensors: %s failed: %s: %s", getattr(read, "__name__", "reading"), type(exc).__name__, exc)
        return default


def optional(read, *args):
    """read(*args), or None where the file is missing or garbled."""
    try:
        return read(*args)
    except (OSError, ValueError, IndexError, OverflowError):
        return None


def numbered(paths):
    """Paths sorted by the number they end with: thermal_zone2 before thermal_zone10."""
    def key(path):
        match = TRAILING_NUMBER.search(path.rstrip("/"))
        return (int(match.group(1)) if match else -1, path)
    return sorted(paths, key=key)


def milliwatts(voltage_mv, current_ma):
    if voltage_mv is None or current_ma is None:
        return None
    return int(round(voltage_mv * current_ma / 1000.0))


def total_power(rails):
    """The input rail's power where the board has one (VDD_IN, POM_5V_IN, any case), else the sum of the rails;
    None without rails or with a rail that could not be read."""
    for name, rail in rails.items():
        if name.strip().upper() in TOTAL_RAILS:
            return rail.get("power_mw")
    powers = [rail.get("power_mw") for rail in rails.values()]
    if not powers or any(p is None for p in powers):
        return None
    return sum(powers)


class SysfsReader(object):
    """The sysfs side of the host sample. Each method gives one field and never raises."""

    def __init__(self, root="/"):
        self.root = root

    def path(self, relative):
        return os.path.join(self.root, relative)

    def glob(self, pattern):
        return numbered(glob.glob(self.path(pattern)))

    # --- temperatures and thermal throttling --------------------------------------------------------------

    def thermal_zones(self):
        zones = self.glob("sys/class/thermal/thermal_zone*")
        return zones or self.glob("sys/devices/virtual/thermal/thermal_zone*")

    def zone_temperature(self, zone):
        """Degrees C, or None where the zone cannot be read or reads "off" (-256 or below)."""
        millidegrees = optional(read_number, os.path.join(zone, "temp"))
        if millidegrees is None or millidegrees / 1000.0 <= OFF_C:
            return None
        return round(millidegrees / 1000.0, 1)

    def temperatures(self):
        """{zone type as the kernel names it: degrees C}; zones that cannot be read are left out."""
        found = {}
        for zone in self.thermal_zones():
            name = optional(read_text, os.path.join(zone, "type"))
            celsius = self.zone_temperature(zone)
            if not name or celsius is None:
                continue
            if name in found:  # two zones of one type: the second gets its zone's name too
                name = "{} ({})".format(name, os.path.basename(zone))
            found[name] = celsius
        return found

    def thermal_throttling(self):
        """True if a zone is at or past one of its passive/hot/critical trip points; False if none is;
        None where no zone has such a trip point that can be read."""
        known = False
        for zone in self.thermal_zones():
            celsius = self.zone_temperature(zone)
            for type_file in glob.glob(os.path.join(zone, "trip_point_*_type")):
                kind = optional(read_text, type_file)
                if (kind or "").lower() not in THROTTLING_TRIPS:
                    continue
                trip = optional(read_number, type_file[:-len("type")] + "temp")
                if trip is None or celsius is None:
                    continue
                known = True
                if celsius >= trip / 1000.0:
                    return True
        return False if known else None

    # --- power: INA3221 rails -----------------------------------------------------------------------------

    def power_rails(self):
        """{rail name: {power_mw, voltage_mv, current_ma}} from the INA3221 monitors: the ina3221x IIO driver
        (L4T 32) and the ina3221 hwmon driver (L4T 34 and later)."""
        rails = {}
        for label in self.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"):
            name = optional(read_text, label)
            if not name:
                continue
            folder, channel = os.path.dirname(label), label.rsplit("_", 1)[1]
            voltage = optional(read_number, os.path.join(folder, "in_voltage{}_input".format(channel)))
            current = optional(read_number, os.path.join(folder, "in_current{}_input".format(channel)))
            power = optional(read_number, os.path.join(folder, "in_power{}_input".format(channel)))
            rails[name] = {"power_mw": power if power is not None else milliwatts(voltage, current),
                           "voltage_mv": voltage, "current_ma": current}
        for folder, channel, name in self.hwmon_channels():
            voltage = optional(read_number, os.path.join(folder, "in{}_input".format(channel)))
            current = optional(read_number, os.path.join(folder, "curr{}_input".format(channel)))
            rails[name] = {"power_mw": milliwatts(voltage, current), "voltage_mv": voltage, "current_ma": current}
        return dict(sorted(rails.items()))

    def hwmon_channels(self):
        """(folder, channel, label) of each connected INA3221 channel under the hwmon driver: channels 1-3
        (in4-in6 are shunt voltages, in7 their sum), those labelled "NC" (not connected) left out."""
        channels = []
        for label in self.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"):
            channel = os.path.basename(label)[2:-len("_label")]
            name = optional(read_text, label)
            if channel not in ("1", "2", "3") or not name or name.upper() == "NC":
                continue
            channels.append((os.path.dirname(label), channel, name))
        return channels

    def power(self):
        rails = self.power_rails()
        return {"rails": rails, "total_mw": total_power(rails)}

    def power_throttling(self):
        """True if an INA3221 channel raises its warning or critical current alert (curr*_max_alarm,
        curr*_crit_alarm: the alerts that cap the SoC's clocks), False if none does, None where the driver has
        no alert files (the L4T 32 ina3221x driver has only the limits)."""
        known = False
        for folder, channel, _ in self.hwmon_channels():
            for kind in ("max", "crit"):
                alarm = optional(read_number, os.path.join(folder, "curr{}_{}_alarm".format(channel, kind)))
                if alarm is None:
                    continue
                known = True
                if alarm:
                    return True
        return False if known else None

    def throttling(self):
        return {"thermal": guarded(self.thermal_throttling), "power": guarded(self.power_throttling)}

    # --- GPU, fan, power mode, clocks ---------------------------------------------------------------------

    def gpu_devfreq(self):
        """The integrated GPU's devfreq folder (57000000.gpu, 17000000.ga10b, 17000000.gpu...), or None."""
        for folder in sorted(glob.glob(self.path("sys/class/devfreq/*"))):
            if os.path.basename(folder).lower().endswith(GPU_DEVFREQ_NAMES):
                return folder
        return None

    def gpu_percent(self):
        candidates = [self.path(p) for p in GPU_LOAD_FILES]
        devfreq = self.gpu_devfreq()
        if devfreq:
            candidates.append(os.path.join(devfreq, "device", "load"))
        for candidate in candidates:
            permille = optional(read_number, candidate)
            if permille is not None:
                return round(permille / 10.0, 1)
        return None

    def fan_percent(self):
        """The fan's PWM duty as a percentage: /sys/devices/pwm-fan/target_pwm (L4T 32), else the pwm1 of a
        hwmon device (one named like a fan first); None where there is no fan."""
        candidates = [self.path("sys/devices/pwm-fan/target_pwm")]
        hwmons = self.glob("sys/class/hwmon/hwmon*")
        named = [(optional(read_text, os.path.join(h, "name")) or "", h) for h in hwmons]
        candidates += [os.path.join(h, "pwm1") for name, h in named if "fan" in name.lower()]
        candidates += [os.path.join(h, "pwm1") for name, h in named if "fan" not in name.lower()]
        for candidate in candidates:
            pwm = optional(read_number, candidate)
            if pwm is not None:
                return round(pwm * 100.0 / FAN_PWM_MAX, 1)
        return None

    def nvpmodel(self):
        """The power mode's name: its id from /var/lib/nvpmodel/status (what nvpmodel itself writes, "pmode:0001"),
        else the default in /etc/nvpmodel.conf; the name from that file's POWER_MODEL lines."""
        conf = optional(read_text, self.path("etc/nvpmodel.conf"))
        if not conf:
            return None
        modes = dict((int(i), name) for i, name in NVPMODEL_MODE.findall(conf))
        status = optional(read_text, self.path("var/lib/nvpmodel/status")) or ""
        current = NVPMODEL_STATUS.search(status) or NVPMODEL_DEFAULT.search(conf)
        return modes.get(int(current.group(1))) if current else None

    def jetson_clocks(self):
        """True when clocks are pinned at their maximum as jetson_clocks leaves them (CPU scaling_min_freq ==
        scaling_max_freq and the GPU's devfreq min_freq == max_freq), False when not; None off a Jetson (no GPU
        devfreq) or where those files cannot be read."""
        gpu = self.gpu_devfreq()
        if gpu is None:
            return None
        cpu = self.path("sys/devices/system/cpu/cpu0/cpufreq")
        pairs = [(os.path.join(cpu, "scaling_min_freq"), os.path.join(cpu, "scaling_max_freq")),
                 (os.path.join(gpu, "min_freq"), os.path.join(gpu, "max_freq"))]
        pinned = []
        for low, high in pairs:
            low, high = optional(read_number, low), optional(read_number, high)
            if low is None or high is None:
                return None
            pinned.append(low >= high)
        return all(pinned)

    def sample(self):
        """Every sysfs field of the host sample, each on its own: one that fails is None, the others stand."""
        power = guarded(self.power, {"rails": {}, "total_mw": None})
        return {"temperatures": guarded(self.temperatures, {}), "power": power, "power_mw": power["total_mw"],
                "gpu_percent": guarded(self.gpu_percent), "emc_percent": None,
                "fan_percent": guarded(self.fan_percent), "nvpmodel": guarded(self.nvpmodel),
                "jetson_clocks": guarded(self.jetson_clocks), "throttling": self.throttling()}
