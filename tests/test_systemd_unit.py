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
