"""Facts about this machine that engines depend on: the Jetson's L4T release, the CPU's name and flags.
Neutral: read by the backends and the engine key alike."""
import os
import platform

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"


def l4t_release(path=NV_TEGRA_RELEASE):
    """'R32.7.1' from '# R32 (release), REVISION: 7.1, ...' on a Jetson; '' elsewhere."""
    try:
        with open(path) as f:
            first = f.readline()
    except OSError:
        return ""
    fields = dict(part.strip().split(" ", 1) for part in first.lstrip("# ").split(",") if " " in part.strip())
    release = first.lstrip("# ").split(" ", 1)[0]
    revision = fields.get("REVISION:", "").strip()
    return "{}.{}".format(release, revision) if revision else release


def cpu_description(cpuinfo=None):
    """(model name, ISA flags) of this CPU, from /proc/cpuinfo (or the file $FACEWATCH_CPUINFO names)."""
    cpuinfo = cpuinfo or os.environ.get("FACEWATCH_CPUINFO") or "/proc/cpuinfo"
    name, flags = "", set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware") and not name:
                    name = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags
