import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))


def run_cli(*args, **kwargs):
    """`facewatch ARGS` as a user runs it: a separate process; returns CompletedProcess (text)."""
    env = dict(os.environ, **kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "appliance"] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=env, timeout=kwargs.pop("timeout", 300), **kwargs)


@pytest.fixture(scope="session")
def model():
    from appliance.manifest import load_model
    return load_model()


@pytest.fixture(scope="session")
def detector():
    from appliance.session import open_detector
    with open_detector(backend="onnxruntime", threads=2) as opened:
        yield opened


@pytest.fixture(scope="session")
def group_photo():
    """A real six-person photo from a PyPI package (not committed: its license is unclear)."""
    from fetch_test_images import fetch_group_photo
    return fetch_group_photo()
