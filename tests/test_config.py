import pytest

from appliance import config as configuration
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
    ("[mqtt]\npassword_file = '/nonexistent/secret'\n", "mqtt.password_file: cannot read /nonexistent/secret"),
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
    path = configuration.secret_path("", "mqtt_password")
    assert configuration.read_secret(path) == b"s3cret"
