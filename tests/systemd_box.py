"""A real systemd (PID 1 of a new PID + mount namespace) over a throw-away overlay of /, for the tests of
`systemctl start facewatch` (shared/recipes/real-systemd.md).

The host's files are the overlay's lower layer and are never written: every change lands in a tmpfs. The
source tree is bound read-only at /srv/facewatch-src (systemd wipes /tmp at boot), and the box shares
the host's network, so a mosquitto on 127.0.0.1 outside is reachable inside. stop() kills that systemd by
its PID, which ends everything in its namespace, and the mounts go with it.
"""
import os
import shlex
import shutil
import subprocess
import time

SOURCE_IN_BOX = "/srv/facewatch-src"
# What the image enables that these tests do not need (or that would collide: its own mosquitto on 1883).
MASKED = ("postgresql.service", "getty@.service", "serial-getty@.service", "mosquitto.service",
          "systemd-networkd.service", "systemd-resolved.service", "cron.service", "ssh.service")


def refusal():
    """Why this machine cannot boot a box ('' when it can)."""
    if os.geteuid() != 0:
        return "needs root to make namespaces and mounts"
    for tool in ("unshare", "nsenter"):
        if not shutil.which(tool):
            return "{} is not installed".format(tool)
    if not os.path.exists("/lib/systemd/systemd"):
        return "systemd is not installed (/lib/systemd/systemd)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs tmpfs /mnt && mkdir /mnt/u /mnt/w /mnt/m && "
                            "mount -t overlay overlay -o lowerdir=/,upperdir=/mnt/u,workdir=/mnt/w /mnt/m"],
                           stderr=subprocess.PIPE, universal_newlines=True)
    return "this machine refuses an overlay of /: {}".format(probe.stderr.strip()) if probe.returncode else ""


class SystemdBox:
    def __init__(self, source, log_path):
        self.source = source
        self.log_path = str(log_path)
        self.process = None
        self.pid = None

    def boot(self, timeout=60):
        merged = "/run/facewatch-box"
        masks = " ".join("ln -sf /dev/null {}/etc/systemd/system/{};".format(merged, unit) for unit in MASKED)
        script = """set -e
mkdir -p /run/facewatch-layer {m}
mount -t tmpfs tmpfs /run/facewatch-layer
mkdir -p /run/facewatch-layer/upper /run/facewatch-layer/work
mount -t overlay overlay -o lowerdir=/,upperdir=/run/facewatch-layer/upper,workdir=/run/facewatch-layer/work {m}
mount --rbind /dev {m}/dev
mount -t proc proc {m}/proc
mount --rbind /sys {m}/sys
mount -t tmpfs tmpfs {m}/run
mount -t tmpfs tmpfs {m}/tmp
mkdir -p {m}{src}
mount --bind {source} {m}{src}
mount -o remount,bind,ro {m}{src}
{masks}
cd {m}
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
exec /lib/systemd/systemd --system --log-target=console --log-level=notice
""".format(m=merged, src=SOURCE_IN_BOX, source=shlex.quote(self.source), masks=masks)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                                         "bash", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self.pid or self._child_of(self.process.pid)
            if self.pid and self.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded"):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)  # a boot has no event to wait on from outside but its own answer
        raise RuntimeError("systemd did not boot in the box: {}".format(open(self.log_path).read()[-2000:]))

    @staticmethod
    def _child_of(pid):
        try:
            with open("/proc/{0}/task/{0}/children".format(pid)) as f:
                children = f.read().split()
            return int(children[0]) if children else None
        except (OSError, ValueError):
            return None

    def run(self, *command, timeout=120, check=False):
        """A command inside the box (its mounts and PIDs); CompletedProcess with text output."""
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "--"] + list(command),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                timeout=timeout)
        if check and result.returncode:
            raise AssertionError("{} failed ({}): {}".format(" ".join(command), result.returncode, result.stdout[-3000:]))
        return result

    def write(self, path, text, mode="0644"):
        """A file inside the box (its folder made if missing)."""
        process = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "--", "sh", "-c",
                                  "mkdir -p \"$(dirname {0})\" && cat > {0} && chmod {1} {0}".format(
                                      shlex.quote(path), mode)], input=text, universal_newlines=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if process.returncode:
            raise AssertionError("cannot write {} in the box: {}".format(path, process.stdout))

    def show(self, unit, *properties):
        output = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def stop(self):
        if self.pid:
            try:
                os.kill(self.pid, 9)
            except OSError:
                pass
        if self.process:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
