"""Host health for telemetry: the interface lives in appliance/health/ (its docstring lists the fields).
Kept for the daemon's and the tests' imports."""
from appliance.health import JtopHost, PsutilHost, SysfsReader, open_host_sensors

__all__ = ["JtopHost", "PsutilHost", "SysfsReader", "open_host_sensors"]
