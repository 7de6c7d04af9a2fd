"""Host health for telemetry, one interface over two sources.

`open_host_sensors(disk_path="/", root="/")` gives an object with `.name` ("jtop" or "psutil"),
`.sample()` -> dict and `.close()`, or None when no source can be opened. The sources: jetson-stats
(`jtop`, one long-lived connection to jtop.service; 4.x and 7.x) on a Jetson, else psutil plus sysfs (and
psutil plus sysfs again, said once at warning level, when jetson-stats is installed but jtop.service cannot
be used). `disk_path` is the folder whose file system `disk` describes; `root` is where /sys, /etc and /var
are looked for (tests point it at tests/data/sysfs/BOARD).

The sample, the same keys from either source; a field the source cannot tell is None:
  source         "jtop" or "psutil"
  temperatures   {zone: degrees C}, names as the source gives them (jtop: "CPU", "gpu"; sysfs: "CPU-therm",
                 "cpu-thermal"); sensors that are off (-256 or below) or unreadable are left out
  power          {"rails": {name: {"power_mw", "voltage_mv", "current_ma"}}, "total_mw"}: the INA3221 rails
                 (none on boards without them); total_mw is the input rail (VDD_IN, POM_5V_IN) where there is
                 one, else the sum of the rails
  power_mw       power.total_mw
  cpu_percent    CPU load, all cores
  gpu_percent    integrated GPU load
  emc_percent    memory controller (EMC) load; jtop only (sysfs has it only in debugfs)
  fan_percent    fan PWM duty, 0..100
  nvpmodel       power mode name ("MAXN", "15W")
  jetson_clocks  True when the clocks are pinned at their maximum
  throttling     {"thermal": a zone is at a passive/hot/critical trip point, "power": an INA3221 current alert
                 is raised}; from sysfs with either source
  ram, swap      {"used_mb", "total_mb"}
  disk           {"path", "free_mb", "percent"} of disk_path
  load           1, 5 and 15 minute load averages
"""
from appliance.health.sensors import JtopHost, PsutilHost, open_host_sensors
from appliance.health.sysfs import SysfsReader

__all__ = ["JtopHost", "PsutilHost", "SysfsReader", "open_host_sensors"]
