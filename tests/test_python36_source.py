import os
import shutil
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_source_runs_on_python_3_6_according_to_vermin():
    vermin = shutil.which("vermin", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert vermin, "vermin is part of the test extra: pip install -e '.[test]'"
    result = subprocess.run([vermin, "-t=3.6-", "--violations", "--no-tips", "--eval-annotations",
                             "appliance", "scripts", "bench"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 0, result.stdout
