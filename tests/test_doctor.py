import json

from conftest import run_cli
from figures import record


def config_file(tmp_path, port, source):
    path = tmp_path / "facewatch.toml"
    path.write_text('[camera]\nsource = "{}"\n[mqtt]\nhost = "127.0.0.1"\nport = {}\n[engine]\nbackend = '
                    '"onnxruntime"\ncache_dir = "{}"\n'.format(source, port, tmp_path / "engines"))
    return path


def test_a_working_installation_is_all_ok(tmp_path, mosquitto, clip):
    result = run_cli("doctor", "--config", config_file(tmp_path, mosquitto.port, clip[0]), timeout=120)
    assert result.returncode == 0, result.stdout
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line[:4] in ("ok  ", "warn", "fail")}
    assert lines["camera"].startswith("ok") and "640x480 from" in lines["camera"]
    assert lines["broker"].startswith("ok") and "accepted the connection" in lines["broker"]
    assert lines["backend"].startswith("ok    backend       onnxruntime")
    assert result.stdout.rstrip().endswith("nothing blocks facewatch")


def test_a_broken_camera_and_broker_are_failures_with_hints_and_exit_1(tmp_path, clip):
    from brokers import free_port
    result = run_cli("doctor", "--json", "--config", config_file(tmp_path, free_port(), "/nonexistent/clip.avi"),
                     timeout=120)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    failures = {f["check"]: f for f in report["findings"] if f["level"] == "fail"}
    assert report["ok"] is False and set(failures) == {"camera", "broker"}
    assert "no such file" in failures["camera"]["detail"] and failures["camera"]["hint"]
    assert "Connection refused" in failures["broker"]["detail"] and failures["broker"]["hint"]
    record("doctor on a broken installation", failures=sorted(failures), exit_code=result.returncode)


def test_an_invalid_configuration_is_a_failure_naming_the_key(tmp_path):
    path = tmp_path / "facewatch.toml"
    path.write_text("[mqtt]\nport = 0\n")
    result = run_cli("doctor", "--config", path, timeout=60)
    assert result.returncode == 1
    assert "mqtt.port: must be >= 1" in result.stdout and "facewatch check-config --config" in result.stdout
