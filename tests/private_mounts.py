"""Whether this machine lets a test mount a small file system in a private mount namespace (`unshare`)."""
import os
import shutil
import subprocess


def namespaces_refused():
    """'' when it does; else why not, in words (for pytest's skip reason)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare to mount a small file system privately"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], stderr=subprocess.PIPE, universal_newlines=True)
    return "this machine refuses private mounts: {}".format(probe.stderr.strip()) if probe.returncode else ""
