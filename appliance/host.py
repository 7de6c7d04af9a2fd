"""Host health for telemetry: temperatures, power, CPU/GPU load, RAM/swap, disk.

Providers by name, imported lazily: `jtop` (jetson-stats, on a Jetson with jtop.service running) and
`psutil` (psutil plus /sys/class/thermal, anywhere). The first that works is used.
"""
import glob
import logging
import os

log = logging.getLogger(__name__)

THERMAL_ZONES = "/sys/class/thermal/thermal_zone*"


def sysfs_temperatures(pattern=THERMAL_ZONES):
    """{zone type: degrees C} from the kernel's thermal zones (Jetson names them CPU-therm, GPU-therm...)."""
    temperatures = {}
    for zone in sorted(glob.glob(pattern)):
        try:
            with open(os.path.join(zone, "type")) as f:
                name = f.read().strip()
            with open(os.path.join(zone, "temp")) as f:
                millidegrees = int(f.read().strip())
        except (OSError, ValueError):
            continue
        temperatures[name] = round(millidegrees / 1000.0, 1)
    return temperatures


class PsutilHost:
    name = "psutil"

    def __init__(self, disk_path="/"):
        import psutil
        self._psutil = psutil
        self._disk_path = disk_path
        psutil.cpu_percent(None)

    def close(self):
        pass

    def sample(self):
        psutil = self._psutil
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(self._disk_path)
        return {"source": self.name, "temperatures": sysfs_temperatures(), "power_mw": None,
                "cpu_percent": psutil.cpu_percent(None), "gpu_percent": None,
                "ram": {"used_mb": memory.used // 2 ** 20, "total_mb": memory.total // 2 ** 20},
                "swap": {"used_mb": swap.used // 2 ** 20, "total_mb": swap.total // 2 ** 20},
                "disk": {"path": self._disk_path, "free_mb": disk.free // 2 ** 20, "percent": disk.percent},
                "load": [round(v, 2) for v in os.getloadavg()]}


class JtopHost(PsutilHost):
    """jetson-stats: board temperatures, power rails and GPU load; psutil for the rest."""

    name = "jtop"

    def __init__(self, disk_path="/"):
        from jtop import jtop
        super().__init__(disk_path)
        self._jetson = jtop()
        self._jetson.start()  # raises JtopException where jtop.service is not running

    def sample(self):
        report = super().sample()
        stats = self._jetson.stats
        report["temperatures"] = {k[5:]: v for k, v in stats.items() if k.startswith("Temp ") and v > -256}
        report["power_mw"] = stats.get("Power TOT")
        report["gpu_percent"] = stats.get("GPU")
        return report

    def close(self):
        self._jetson.close()


PROVIDERS = (("jtop", JtopHost), ("psutil", PsutilHost))


def open_host_sensors(disk_path="/"):
    for name, provider in PROVIDERS:
        try:
            return provider(disk_path)
        except Exception as exc:  # ImportError off-Jetson, JtopException without its service
            log.debug("host sensors: %s unavailable: %s", name, exc)
    return None
