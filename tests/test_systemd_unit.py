import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT

UNIT = os.path.join(REPO_ROOT, "systemd", "facewatch.service")


def unit_settings():
    with open(UNIT) as f:
        return [line.strip() for line in f if "=" in line and not line.startswith("#")]


def test_the_unit_is_type_notify_with_a_watchdog_and_systemd_owned_directories():
    settings = unit_settings()
    for expected in ("Type=notify", "User=facewatch", "SupplementaryGroups=video", "StateDirectory=facewatch",
                     "ConfigurationDirectory=facewatch", "NoNewPrivileges=yes"):
        assert expected in settings
    assert any(s.startswith("WatchdogSec=") for s in settings)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_hardening_scores_at_most_2_5():
    output = subprocess.run(["systemd-analyze", "security", "--offline=true", UNIT], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True).stdout
    score = float(re.search(r"Overall exposure level for facewatch.service: ([0-9.]+)", output).group(1))
    assert score <= 2.5, output[-2000:]


INSTALL = os.path.join(REPO_ROOT, "scripts", "install.sh")


def without_systemctl(tmp_path):
    """A PATH with the few commands install.sh uses and no systemctl: a host that does not run systemd."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("bash", "dirname", "sed", "id", "head", "awk", "getent", "cat"):
        os.symlink(shutil.which(name), str(folder / name))
    return {"PATH": str(folder)}


def install_sh(tmp_path, *args):
    return subprocess.run([shutil.which("bash"), INSTALL] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                          env=dict(os.environ, **without_systemctl(tmp_path)))


def test_a_dry_run_on_a_host_without_systemd_shows_every_step_and_says_what_is_missing(tmp_path):
    python = shutil.which("python3") or "/usr/bin/python3"
    result = install_sh(tmp_path, "--dry-run", "--python", python)
    assert result.returncode == 0, result.stderr
    for step in ("+ useradd --system", "+ {} -m venv --system-site-packages /opt/facewatch/venv".format(python),
                 "+ write /etc/systemd/system/facewatch.service (mode 0644):",
                 "+ systemctl daemon-reload", "+ systemctl enable facewatch.service"):
        assert step in result.stdout, step
    assert "== dry run: nothing was changed" in result.stdout
    assert "this host lacks what a real run needs (it would stop with exit 2):" in result.stdout
    assert "   - systemctl not found: this host does not run systemd" in result.stdout
    if not os.path.isdir("/run/systemd/system"):
        assert "   - systemd is not running on this host (no /run/systemd/system)" in result.stdout


def test_a_dry_run_names_a_missing_python_and_still_shows_the_rest(tmp_path):
    result = install_sh(tmp_path, "--dry-run", "--python", str(tmp_path / "no-python"))
    assert result.returncode == 0, result.stderr
    assert "   - no Python at {} (say --python PATH)".format(tmp_path / "no-python") in result.stdout
    assert "+ systemctl daemon-reload" in result.stdout and "Traceback" not in result.stderr


def test_an_uninstall_dry_run_without_systemd_shows_its_steps(tmp_path):
    result = install_sh(tmp_path, "--uninstall", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "+ rm -rf /opt/facewatch" in result.stdout
    assert "   - systemctl not found: this host does not run systemd" in result.stdout


def test_a_real_run_on_a_host_without_systemd_is_still_refused_before_any_change(tmp_path):
    result = install_sh(tmp_path, "--no-start")
    assert result.returncode == 2
    assert "systemctl not found" in result.stderr or "run it as root" in result.stderr
    assert "+ " not in result.stdout and "== Python" not in result.stdout
