"""The two sources of the host sample: jetson-stats (`jtop`, through jtop.service) and psutil + sysfs.

Both give the same fields (appliance/health/__init__.py lists them); a field a source cannot tell is None.
"""
import logging
import math
import numbers
import os

from appliance.health.sysfs import OFF_C, SysfsReader, guarded, total_power

log = logging.getLogger(__name__)

MB = 2 ** 20


def one_line(exc):
    return "{}: {}".format(type(exc).__name__, " ".join(str(exc).split()))


class PsutilHost(object):
    """psutil for CPU, memory, disk and load; sysfs (SysfsReader) for the rest."""

    name = "psutil"

    def __init__(self, disk_path="/", root="/"):
        import psutil
        self._psutil = psutil
        self._disk_path = disk_path
        self.sysfs = SysfsReader(root)
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def close(self):
        pass

    def basics(self):
        """The fields psutil gives: cpu_percent, ram, swap, disk, load."""
        psutil = self._psutil

        def ram():
            memory = psutil.virtual_memory()
            return {"used_mb": memory.used // MB, "total_mb": memory.total // MB}

        def swap():
            memory = psutil.swap_memory()
            return {"used_mb": memory.used // MB, "total_mb": memory.total // MB}

        def disk():
            usage = psutil.disk_usage(self._disk_path)
            return {"path": self._disk_path, "free_mb": usage.free // MB, "percent": usage.percent}

        def load():
            return [round(v, 2) for v in os.getloadavg()]

        return {"cpu_percent": guarded(lambda: psutil.cpu_percent(None)),
                "ram": guarded(ram, {"used_mb": None, "total_mb": None}),
                "swap": guarded(swap, {"used_mb": None, "total_mb": None}),
                "disk": guarded(disk, {"path": self._disk_path, "free_mb": None, "percent": None}),
                "load": guarded(load)}

    def sample(self):
        return assemble(self.name, self.basics(), guarded(self.sysfs.sample, {}))


def assemble(source, basics, fields):
    """The sample in its documented order, every field present (None where unknown)."""
    power = fields.get("power") or {"rails": {}, "total_mw": None}
    report = {"source": source, "temperatures": fields.get("temperatures") or {}, "power": power,
              "power_mw": power.get("total_mw"), "cpu_percent": basics.get("cpu_percent")}
    for key in ("gpu_percent", "emc_percent", "fan_percent", "nvpmodel", "jetson_clocks"):
        report[key] = fields.get(key)
    report["throttling"] = fields.get("throttling") or {"thermal": None, "power": None}
    for key in ("ram", "swap", "disk", "load"):
        report[key] = basics.get(key)
    return report


# --- jetson-stats ----------------------------------------------------------------------------------------------

def lookup(mapping, name, default=None):
    """mapping[name], the key matched case-insensitively; `default` if absent or if mapping is not a mapping.
    jetson-stats' own objects (GPU, Memory, Fan) are dict-like without being dicts."""
    try:
        if name in mapping:
            return mapping[name]
        wanted = name.lower()
        for key in mapping.keys():
            if isinstance(key, str) and key.lower() == wanted:
                return mapping[key]
    except (TypeError, AttributeError, KeyError):
        pass
    return default


def number(value):
    """value as a float, or None for what is not a number (jtop writes 'OFF' for a sensor that is off)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    try:
        value = float(value)
    except (OverflowError, ValueError):
        return None
    return value if math.isfinite(value) else None


def stats_value(stats, name):
    return number(lookup(stats, name))


class JtopReadings(object):
    """The fields of the sample from a started jtop client: 4.x (the last for Python 3.6) and 7.x have the same
    properties (temperature, power, gpu, memory, fan, nvpmodel, jetson_clocks; see tests/fakes/jtop/); the
    flat `stats` dict is the fallback for a property that is missing or shaped otherwise."""

    def __init__(self, jetson):
        self.jetson = jetson

    def stats(self):
        return guarded(lambda: self.jetson.stats, {})

    def temperatures(self):
        found = {}
        zones = getattr(self.jetson, "temperature", None)
        if hasattr(zones, "items"):
            for name, zone in zones.items():
                celsius = number(lookup(zone, "temp")) if hasattr(zone, "items") else number(zone)
                if celsius is None or celsius <= OFF_C or lookup(zone, "online", True) is False:
                    continue
                found[name] = round(celsius, 1)
            return found
        for key, value in self.stats().items():  # "Temp CPU": 31.5
            if isinstance(key, str) and key.lower().startswith("temp ") and number(value) is not None:
                if number(value) > OFF_C:
                    found[key[5:]] = round(number(value), 1)
        return found

    def power(self):
        """{rails, total_mw}; jtop's `power` is {} on a board without INA3221 monitors."""
        power = getattr(self.jetson, "power", None) or {}
        rails = {}
        for name, rail in (lookup(power, "rail") or {}).items():
            if lookup(rail, "online", True) is False:
                continue
            rails[name] = self.rail(rail)
        tot = lookup(power, "tot") or {}
        tot_name = lookup(tot, "name")
        if tot_name:  # jtop moves the input rail (VDD_IN, POM_5V_IN) out of `rail` into `tot`
            rails[tot_name] = self.rail(tot)
        rails = dict(sorted(rails.items()))
        total = total_power(rails) if rails else None
        if total is None:
            total = number(lookup(tot, "power"))
        if total is None:
            total = stats_value(self.stats(), "Power TOT")
        return {"rails": rails, "total_mw": int(total) if total is not None else None}

    @staticmethod
    def rail(rail):
        def value(key):
            found = number(lookup(rail, key))
            return int(found) if found is not None else None
        return {"power_mw": value("power"), "voltage_mv": value("volt"), "current_ma": value("curr")}

    def gpu_percent(self):
        gpus = getattr(self.jetson, "gpu", None)
        if hasattr(gpus, "items"):
            for _, gpu in gpus.items():
                load = number(lookup(lookup(gpu, "status") or {}, "load"))
                if load is not None:
                    return round(load, 1)
        return stats_value(self.stats(), "GPU")

    def emc_percent(self):
        emc = lookup(getattr(self.jetson, "memory", None) or {}, "EMC") or {}
        if lookup(emc, "online", True) is not False:
            value = number(lookup(emc, "val"))
            if value is not None:
                return round(value, 1)
        return stats_value(self.stats(), "EMC")

    def fan_percent(self):
        fans = getattr(self.jetson, "fan", None)
        if hasattr(fans, "items"):
            for _, fan in fans.items():
                speeds = lookup(fan, "speed") or []
                if speeds and number(speeds[0]) is not None:
                    return round(number(speeds[0]), 1)
        return None

    def nvpmodel(self):
        model = getattr(self.jetson, "nvpmodel", None)
        if model is None:
            return None
        name = getattr(model, "name", None)
        return str(name) if name is not None else None

    def jetson_clocks(self):
        clocks = getattr(self.jetson, "jetson_clocks", None)
        return None if clocks is None else bool(clocks)

    def memory(self, kind):
        """{used_mb, total_mb} from jtop's memory[RAM|SWAP] (kB), or None."""
        found = lookup(getattr(self.jetson, "memory", None) or {}, kind)
        used, total = number(lookup(found, "used")), number(lookup(found, "tot"))
        if used is None or total is None:
            return None
        return {"used_mb": int(used) // 1024, "total_mb": int(total) // 1024}


class JtopHost(object):
    """jetson-stats through one long-lived connection to jtop.service (started here, closed by close()), with
    psutil for CPU, disk and load and sysfs for throttling, which jtop does not report. If the connection is
    lost later, the samples come from psutil and sysfs from then on, said once at warning level."""

    def __init__(self, disk_path="/", root="/"):
        from jtop import jtop  # ImportError: jetson-stats is not installed
        self.name = "jtop"
        self.fallback = PsutilHost(disk_path, root)
        jetson = jtop()
        jetson.start()  # raises JtopException where jtop.service is not running or not reachable
        self._jetson = jetson
        self.readings = JtopReadings(jetson)
        self.version = getattr(__import__("jtop"), "__version__", "?")

    def close(self):
        jetson, self._jetson = self._jetson, None
        if jetson is not None:
            jetson.close()

    def connected(self):
        """False once the connection is lost (the jtop reader thread's error, re-raised by ok()) or closed."""
        if self._jetson is None:
            return False
        try:
            if self._jetson.ok(spin=True):
                return True
            reason = "the jtop client stopped"
        except Exception as exc:  # what the jtop reader thread hit: JtopException, EOFError, BrokenPipeError...
            reason = one_line(exc)
        log.warning("host sensors: lost the connection to jtop.service (%s); host readings come from psutil and "
                    "sysfs from now on", reason)
        jetson, self._jetson = self._jetson, None
        self.name = self.fallback.name
        guarded(jetson.close)
        return False

    def sample(self):
        if not self.connected():
            return self.fallback.sample()
        readings, sysfs = self.readings, self.fallback.sysfs
        basics = self.fallback.basics()
        for kind, key in (("RAM", "ram"), ("SWAP", "swap")):
            basics[key] = guarded(lambda: readings.memory(kind)) or basics[key]
        fields = {"temperatures": guarded(readings.temperatures, {}),
                  "power": guarded(readings.power, {"rails": {}, "total_mw": None})}
        for key in ("gpu_percent", "emc_percent", "fan_percent", "nvpmodel", "jetson_clocks"):
            fields[key] = guarded(getattr(readings, key))
        fields["throttling"] = sysfs.throttling()
        return assemble(self.name, basics, fields)


def open_host_sensors(disk_path="/", root="/"):
    """The host sensor source: jetson-stats where it is installed and jtop.service answers, else psutil and
    sysfs; None if neither can be opened. A jetson-stats that is installed but cannot be reached is said once,
    at warning level, with the reason."""
    try:
        host = JtopHost(disk_path, root)
        log.info("host sensors: jetson-stats %s (jtop.service)", host.version)
        return host
    except ImportError as exc:
        if getattr(exc, "name", None) == "jtop":
            log.debug("host sensors: jetson-stats is not installed")
        else:
            log.warning("host sensors: jetson-stats cannot be imported (%s); host readings come from psutil and "
                        "sysfs", one_line(exc))
    except Exception as exc:  # JtopException (jtop.service down, no permission, version mismatch) and the like
        log.warning("host sensors: jetson-stats is installed but jtop.service cannot be used (%s); host readings "
                    "come from psutil and sysfs", one_line(exc))
    try:
        return PsutilHost(disk_path, root)
    except Exception as exc:  # ImportError: psutil is not installed
        log.warning("host sensors: psutil unavailable (%s): no host readings", one_line(exc))
        return None
