import pytest

from appliance.config import schema as configuration
from appliance.errors import ConfigError
from conftest import REPO_ROOT, run_cli

EXAMPLE = REPO_ROOT + "/examples/facewatch.toml"


def write(tmp_path, text):
    path = tmp_path / "facewatch.toml"
    path.write_text(text)
    return str(path)


def test_the_example_documents_every_key_with_its_default():
    example = configuration.load(EXAMPLE, required=True)
    assert example._replace(path=None) == configuration.defaults()
    with open(EXAMPLE) as f:
        text = f.read()
    for section, fields in configuration.SCHEMA.items():
        assert "[{}]".format(section) in text
        for key in fields:
            assert "\n{} = ".format(key) in text, "{}.{} is not documented".format(section, key)


def test_values_are_typed_and_frozen(tmp_path):
    config = configuration.load(write(tmp_path, "[camera]\nsource = 2\nfps = 15\n"), required=True)
    assert config.camera.source == 2 and config.camera.fps == 15.0 and isinstance(config.camera.fps, float)
    with pytest.raises(AttributeError):
        config.camera.fps = 30.0


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.hots: unknown key \(did you mean mqtt\.host\?\)"):
        configuration.load(write(tmp_path, "[mqtt]\nhots = 'broker'\n"), required=True)


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cameras: unknown key"):
        configuration.load(write(tmp_path, "[cameras]\nsource = '0'\n"), required=True)


@pytest.mark.parametrize("text, message", [
    ("[mqtt]\nport = 70000\n", "mqtt.port: must be <= 65535, got 70000"),
    ("[mqtt]\nport = '1883'\n", "mqtt.port: must be an integer, got '1883'"),
    ("[camera]\nloop = 1\n", "camera.loop: must be true or false, got 1"),
    ("[detections]\npolicy = 'sometimes'\n", "detections.policy: must be one of every_frame, on_change, max_rate"),
    ("[engine]\nprecision = 'int4'\n", "engine.precision: must be one of auto, int8, fp16, fp32"),
    ("[camera]\nreconnect_min = 5.0\nreconnect_max = 1.0\n", "camera.reconnect_max: must be >= camera.reconnect_min"),
    ("[mqtt]\nusername = 'cam'\npassword_file = '/nonexistent/secret'\n",
     "mqtt.password_file: /nonexistent/secret: no such file"),
    ("[mqtt\n", "not valid TOML"),
])
def test_bad_values_name_their_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, text), required=True)
    assert message in str(error.value)


def test_every_error_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, "[mqtt]\nport = 0\nqueue_size = 0\n[camera]\nfps = -1\n"), required=True)
    assert "has 3 errors" in str(error.value)


def test_check_config_reports_a_relation_between_values_with_the_other_errors_in_one_run(tmp_path):
    """The README promises every error at once: reconnect_min above reconnect_max is one of them, not an
    error found only after the others were fixed."""
    result = run_cli("check-config", "--config", write(
        tmp_path, "[mqtt]\nport = -1\n[camera]\nreconnect_min = 60\nreconnect_max = 30\n"), timeout=30)
    assert result.returncode == 2
    assert "has 2 errors" in result.stderr
    assert "mqtt.port: must be >= 1, got -1" in result.stderr
    assert "camera.reconnect_max: must be >= camera.reconnect_min (60.0)" in result.stderr


def test_a_relation_is_not_judged_on_a_refused_value_standing_in_as_its_default(tmp_path):
    result = run_cli("check-config", "--config", write(
        tmp_path, '[camera]\nreconnect_min = 60\nreconnect_max = "often"\n'), timeout=30)
    assert result.returncode == 2 and "has 1 error:" in result.stderr
    assert "camera.reconnect_max: must be a number, got 'often'" in result.stderr


def test_check_config_exits_2_and_explains(tmp_path):
    result = run_cli("check-config", "--config", write(tmp_path, "[mqtt]\nport = -1\n[telemetry]\nevery = 5\n"))
    assert result.returncode == 2
    assert "mqtt.port: must be >= 1, got -1" in result.stderr
    assert "telemetry.every: unknown key" in result.stderr


def test_check_config_accepts_the_example():
    result = run_cli("check-config", "--config", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_run_with_a_bad_config_exits_2_naming_the_key(tmp_path):
    result = run_cli("run", "--config", write(tmp_path, "[engine]\nbackend = 'cuda'\n"))
    assert result.returncode == 2
    assert "engine.backend: must be one of auto, tensorrt, onnxruntime" in result.stderr


def test_a_named_config_that_does_not_exist_is_an_error(tmp_path):
    result = run_cli("run", "--config", tmp_path / "missing.toml")
    assert result.returncode == 2
    assert "missing.toml: no such file" in result.stderr


def test_password_comes_from_a_systemd_credential(tmp_path, monkeypatch):
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert configuration.secret("", "mqtt.password_file", "mqtt_password") == b"s3cret"
    (tmp_path / "mqtt_password").write_text("  \n")
    with pytest.raises(ConfigError, match="the systemd credential mqtt_password: .*is empty"):
        configuration.secret("", "mqtt.password_file", "mqtt_password")
    assert configuration.secret("", "commands.key_file", "command_key") is None


@pytest.mark.parametrize("text, message", [
    ("[telemetry]\ninterval = nan\n", "telemetry.interval: must be a finite number, got nan"),
    ("[telemetry]\ninterval = inf\n", "telemetry.interval: must be a finite number, got inf"),
    ("[camera]\nfps = -inf\n", "camera.fps: must be a finite number"),
    ("[detections]\nmax_rate = nan\n", "detections.max_rate: must be a finite number"),
    ("[mqtt]\nhost = ''\n", "mqtt.host: is empty"),
    ("[mqtt]\nhost = 'broker host'\n", "mqtt.host: 'broker host' is not a valid host name"),
    ("[mqtt]\nhost = 'a..b'\n", "mqtt.host: 'a..b' is not a valid host name"),
    ("[mqtt]\nhost = '-broker'\n", "mqtt.host: '-broker' is not a valid host name"),
    ("[mqtt]\nprefix = 'site/#'\n", "mqtt.prefix: contains '#'"),
    ("[mqtt]\nprefix = 'a/+/b'\n", "mqtt.prefix: contains '+'"),
    ("[mqtt]\nprefix = '$SYS'\n", "mqtt.prefix: starts with '$'"),
    ("[mqtt]\nprefix = 'a//b'\n", "mqtt.prefix: has an empty topic level"),
    ("[mqtt]\nprefix = ''\n", "mqtt.prefix: is empty"),
    ("[mqtt]\ndevice_id = 'cam/1'\n", "mqtt.device_id: contains '/'"),
    ("[mqtt]\ndevice_id = 'cam#'\n", "mqtt.device_id: contains '#'"),
    ('[mqtt]\ndevice_id = "cam\\u0000"\n', "mqtt.device_id: contains the control character '\\x00'"),
    ("[mqtt]\ndevice_id = 'all'\n", "mqtt.device_id: 'all' is reserved"),
    ("[mqtt]\nprefix = '{}'\n".format("p" * 5000), "mqtt.prefix: is 5000 characters long; at most 4096"),
    ("[camera]\nsource = ''\n", "camera.source: is empty"),
    ("[camera]\nsource = 'csi://left'\n", "camera.source: csi:// needs a sensor number"),
    ("[camera]\nwidth = 640\n", "camera.width and camera.height go together"),
    ("[engine]\ncache_dir = 'engines'\n", "engine.cache_dir: 'engines' is a relative path"),
    ("[engine]\nbackend = 'tensorrt'\nworkers = 2\n", "engine.workers: TensorRT serves from one inference thread"),
    ("[engine]\nworkers = 17\n", "engine.workers: must be"),
    ("[homeassistant]\nprefix = 'ha/#'\n", "homeassistant.prefix: contains '#'"),
    ('[mqtt]\nusername = "u\\nv"\n', "mqtt.username: contains the control character '\\n'"),
])
def test_values_that_would_break_run_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, text), required=True)
    assert message in str(error.value)


@pytest.fixture
def secret_files(tmp_path):
    """Every kind of file a secret key may name, keyed by what it is."""
    import os
    made = {"a folder": tmp_path / "folder", "a FIFO": tmp_path / "fifo", "not UTF-8": tmp_path / "latin1",
            "empty": tmp_path / "blank"}
    made["a folder"].mkdir()
    os.mkfifo(str(made["a FIFO"]))
    made["not UTF-8"].write_bytes(b"caf\xe9\n")
    made["empty"].write_text("  \n")
    return made


@pytest.mark.parametrize("key", ["mqtt.password_file", "commands.key_file"])
@pytest.mark.parametrize("kind, message", [
    ("a folder", "is a folder, not a file"), ("a FIFO", "is a FIFO (named pipe), not a file"),
    ("not UTF-8", "not UTF-8 text"), ("empty", "is empty"),
])
def test_secret_files_of_the_wrong_kind_are_refused_without_blocking(tmp_path, secret_files, key, kind, message):
    section, name = key.split(".")
    extra = "username = 'cam'\n" if section == "mqtt" else ""
    text = "[{}]\n{}{} = '{}'\n".format(section, extra, name, secret_files[kind])
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, text), required=True)
    assert "{}: {}: {}".format(key, secret_files[kind], message) in str(error.value)


def test_tls_files_that_are_not_pem_are_refused(tmp_path):
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("this is not a certificate\n")
    fake_pem = tmp_path / "fake.pem"
    fake_pem.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, "[mqtt]\ntls_ca = '{}'\n".format(not_pem)), required=True)
    assert "mqtt.tls_ca: {}: not PEM".format(not_pem) in str(error.value)
    with pytest.raises(ConfigError) as error:
        configuration.load(write(tmp_path, "[mqtt]\ntls_ca = '{}'\n".format(fake_pem)), required=True)
    assert "mqtt.tls_ca: {}: not a usable CA certificate bundle".format(fake_pem) in str(error.value)
    text = "[mqtt]\ntls_cert = '{0}'\ntls_key = '{0}'\n".format(fake_pem)
    with pytest.raises(ConfigError, match="do not load as a certificate and its key"):
        configuration.load(write(tmp_path, text), required=True)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_config_path_that_is_not_a_file_says_what_it_is(tmp_path, kind):
    import os
    path = tmp_path / "facewatch.toml"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(str(path))
    result = run_cli("check-config", "--config", path, timeout=30)
    assert result.returncode == 2
    assert "{}: is a {}".format(path, "folder" if kind == "folder" else "FIFO") in result.stderr


def test_run_without_a_config_file_stops_and_points_to_the_example(tmp_path):
    result = run_cli("run", env={"CONFIGURATION_DIRECTORY": str(tmp_path)}, timeout=30)
    assert result.returncode == 2
    assert "{}: no such file".format(tmp_path / "facewatch.toml") in result.stderr
    assert "examples/facewatch.toml" in result.stderr and "--config" in result.stderr


@pytest.mark.parametrize("text", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b = " * 5000 + "1" + "}" * 5000])
def test_toml_nested_thousands_deep_is_a_clear_error(tmp_path, text):
    result = run_cli("check-config", "--config", write(tmp_path, text + "\n"), timeout=30)
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr and "Traceback" not in result.stderr


def test_a_topic_longer_than_mqtt_allows_is_refused():
    from appliance.config import validators
    assert validators.topic_length("a" * 65535) is None
    assert "MQTT allows at most 65535" in validators.topic_length("é" * 40000)


def test_an_unreadable_secret_is_refused_as_the_service_user_sees_it(tmp_path):
    """The daemon runs as its own user: a secret that user cannot read is named (as root, checked as nobody)."""
    import os
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="fw-secret-")
    try:
        os.chmod(folder, 0o755)
        secret = os.path.join(folder, "key")
        with open(secret, "w") as f:
            f.write("k3y\n")
        os.chmod(secret, 0)
        config = os.path.join(folder, "facewatch.toml")
        with open(config, "w") as f:
            f.write("[commands]\nkey_file = '{}'\n".format(secret))
        os.chmod(config, 0o644)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        if prefix and not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop privileges")
        import subprocess
        import sys
        # nobody cannot run an interpreter kept under /root (pyenv's); check-config needs only the standard
        # library, so the system's Python 3.11+ (tomllib) serves.
        usable = [python for python in (sys.executable, "/usr/bin/python3") if subprocess.call(
            prefix + [python, "-c", "import sys; assert sys.version_info >= (3, 11) or 'tomli' in sys.modules "
                      "or __import__('tomli')"], stderr=subprocess.DEVNULL, cwd="/") == 0]
        if not usable:
            pytest.skip("no Python that user nobody may run")
        result = subprocess.run(prefix + [usable[0], "-m", "appliance", "check-config", "--config", config],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                                cwd="/", env=dict(os.environ, PYTHONPATH=REPO_ROOT))
        assert result.returncode == 2, result.stderr
        assert "commands.key_file: {}: permission denied".format(secret) in result.stderr
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("key", ["mqtt.device_id", "mqtt.prefix", "homeassistant.prefix"])
@pytest.mark.parametrize("value, size", [("é" * 700, 1400), ("\U0001F600" * 4096, 16384)])
def test_ids_and_prefixes_are_bounded_in_bytes_as_sent(tmp_path, key, value, size):
    from appliance.config.validators import MAX_DEVICE_ID_BYTES, MAX_PREFIX_BYTES
    limit = MAX_DEVICE_ID_BYTES if key == "mqtt.device_id" else MAX_PREFIX_BYTES
    section, name = key.split(".")
    result = run_cli("check-config", "--config", write(tmp_path, '[{}]\n{} = "{}"\n'.format(section, name, value)),
                     timeout=30)
    assert result.returncode == 2
    assert "{}: is {} bytes long in UTF-8 ({} characters); at most {} bytes".format(
        key, size, len(value), limit) in result.stderr


def test_a_device_id_and_prefix_at_the_limit_are_accepted_one_byte_more_is_not(tmp_path):
    from appliance.config.validators import MAX_DEVICE_ID_BYTES, MAX_PREFIX_BYTES
    at_limit = "é" * (MAX_DEVICE_ID_BYTES // 2)
    prefix = "p" * (MAX_PREFIX_BYTES - 3) + "/é"
    config = configuration.load(write(tmp_path, '[mqtt]\ndevice_id = "{}"\nprefix = "{}"\n'.format(at_limit, prefix)),
                                required=True)
    assert len(config.mqtt.device_id.encode("utf-8")) == MAX_DEVICE_ID_BYTES == 128
    assert len(config.mqtt.prefix.encode("utf-8")) == MAX_PREFIX_BYTES == 128
    with pytest.raises(ConfigError, match="mqtt.device_id: is 129 bytes long in UTF-8 .65 characters.; at most 128"):
        configuration.load(write(tmp_path, '[mqtt]\ndevice_id = "{}"\n'.format(at_limit + "a")), required=True)
    with pytest.raises(ConfigError, match="mqtt.prefix: is 129 bytes long in UTF-8 .128 characters.; at most 128"):
        configuration.load(write(tmp_path, '[mqtt]\nprefix = "{}q"\n'.format(prefix)), required=True)


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_the_largest_command_ctl_sends_to_a_device_id_at_the_limit_fits_the_payload_limit(ensure_ascii):
    """The limits are consistent: whatever a device id at the limit holds, a signed rebuild for it (the
    largest command `ctl` sends) is far inside the 4096 bytes a device reads, written as UTF-8 or with
    \\u escapes."""
    import json
    from appliance.remote import envelope
    from appliance.config.validators import MAX_DEVICE_ID_BYTES, device_id
    limit = MAX_DEVICE_ID_BYTES
    widest = ["a" * limit, '"' * limit, "\\" * limit, "é" * (limit // 2), "€" * (limit // 3),
              "\U0001F600" * (limit // 4)]
    sizes = []
    for device in widest:
        assert device_id(device) is None, device
        signed = envelope.sign({"v": 1, "id": "f" * 32, "command": "rebuild", "device": device, "ts": 9999999999,
                                "args": {"force": False, "precision": "fp32"}}, b"k" * 64)
        payload = json.dumps(signed, separators=(",", ":"), ensure_ascii=ensure_ascii).encode("utf-8")
        assert envelope.parse(payload)["device"] == device
        sizes.append(len(payload))
    assert max(sizes) <= envelope.MAX_PAYLOAD_BYTES // 4, sizes  # a wide margin: a quarter of the limit


def test_ctl_refuses_the_device_ids_and_prefixes_the_configuration_refuses():
    import argparse
    from appliance.commands import arguments
    from appliance.config.validators import MAX_DEVICE_ID_BYTES
    assert arguments.device_or_all("é" * (MAX_DEVICE_ID_BYTES // 2)) == "é" * (MAX_DEVICE_ID_BYTES // 2)
    for parse in (arguments.device_or_all, arguments.topic_prefix):
        with pytest.raises(argparse.ArgumentTypeError, match="is 1400 bytes long in UTF-8 .700 characters.; at most"):
            parse("é" * 700)
    result = run_cli("ctl", "--port", "1", "status", "\U0001F600" * 4096, timeout=30)
    assert result.returncode == 2
    assert "DEVICE|all: is 16384 bytes long in UTF-8 (4096 characters); at most 128 bytes" in result.stderr
    result = run_cli("ctl", "--port", "1", "--prefix", "é" * 700, "status", "cam1", timeout=30)
    assert result.returncode == 2 and "--prefix: is 1400 bytes long in UTF-8" in result.stderr


def test_check_config_shows_no_credentials_of_the_camera_url(tmp_path):
    source = "rtsp://viewer:secret@cam:554/live?channel=1&user=admin&pwd=secret"
    result = run_cli("check-config", "--config", write(tmp_path, '[camera]\nsource = "{}"\n'.format(source)),
                     timeout=30)
    assert result.returncode == 0, result.stderr
    assert "camera rtsp://***@cam:554/live?channel=1&user=***&pwd=***," in result.stdout
    for bad in ('source = ["{}"]'.format(source), 'source = "{}"'.format(source.replace("554", "99999")),
                'source = "cam.mjpg?user=admin&pwd=secret"'):
        result = run_cli("check-config", "--config", write(tmp_path, "[camera]\n{}\n".format(bad)), timeout=30)
        assert result.returncode == 2 and "camera.source: " in result.stderr, result.stderr
        assert "secret" not in result.stdout + result.stderr and "admin" not in result.stdout + result.stderr


def test_empty_folders_are_resolved_once_when_the_configuration_loads_and_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = configuration.defaults()
    assert config.engine.cache_dir == str(tmp_path / "state" / "engines")
    assert config.commands.state_dir == str(tmp_path / "state")
    assert configuration.origin(config, "engine.cache_dir") == "the default under systemd: $STATE_DIRECTORY/engines"
    assert configuration.origin(config, "commands.state_dir") == "the default under systemd: $STATE_DIRECTORY"
    path = write(tmp_path, '[engine]\ncache_dir = "{}"\n'.format(tmp_path / "engines"))
    given = configuration.load(path, required=True)
    assert given.engine.cache_dir == str(tmp_path / "engines")
    assert configuration.origin(given, "engine.cache_dir") == "engine.cache_dir in " + path


def test_no_module_beside_the_configuration_resolves_a_default_folder_again():
    """`engine.cache_dir or default_cache_dir()` at each use is gone: the loaded Config carries the folder."""
    import ast
    import os
    import appliance
    root = os.path.dirname(appliance.__file__)
    resolvers = {"default_cache_dir", "default_cache_dir_and_why", "default_state_dir", "default_state_dir_and_why"}
    found = []
    for folder, _, names in os.walk(root):
        for name in (n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            if os.path.dirname(path) == os.path.join(root, "config"):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            found += ["{}:{}".format(os.path.relpath(path, root), node.lineno) for node in ast.walk(tree)
                      if isinstance(node, (ast.Name, ast.Attribute, ast.alias))
                      and (getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", None))
                      in resolvers]
    assert found == []
