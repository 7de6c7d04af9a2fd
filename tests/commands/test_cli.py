"""Everything a user can type gets an answer: a result, or a clear error with exit 2 (usage) or 1
(runtime); never a traceback."""
import io
import os
import re
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.commands import cli
from appliance.config.schema import SCHEMA
from brokers import free_port
from conftest import REPO_ROOT, run_cli
from figures import record

GOLDEN = os.path.join(REPO_ROOT, "engines", "golden.png")


def test_demo_with_a_broker_that_is_not_host_port_is_a_usage_error():
    result = run_cli("demo", "--broker", "foo", timeout=60)
    assert result.returncode == 2
    assert "--broker: expected HOST:PORT" in result.stderr and "Traceback" not in result.stderr


def test_demo_with_a_broker_that_refuses_says_so(tmp_path):
    result = run_cli("demo", "--broker", "127.0.0.1:{}".format(free_port()), "--out", tmp_path / "d.jpg",
                     "--cache-dir", tmp_path / "engines", timeout=120)
    assert result.returncode == 1
    assert "cannot reach the MQTT broker at 127.0.0.1" in result.stderr and "Traceback" not in result.stderr


def test_demo_keeps_its_engines_in_the_users_cache_folder_as_its_help_says(tmp_path):
    help_text = run_cli("demo", "--help").stdout
    assert "engine cache (default: ~/.cache/facewatch/engines)" in " ".join(help_text.split())
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": ""}
    result = run_cli("demo", "--out", tmp_path / "d.jpg", env=env, cwd=str(tmp_path), timeout=180)
    assert result.returncode == 0, result.stderr
    assert [n for n in os.listdir(str(home / ".cache" / "facewatch" / "engines")) if n.endswith(".engine")]


def test_detect_help_states_the_default_the_code_uses():
    default = SCHEMA["detections"]["min_score"].default
    assert "score threshold (default {})".format(default) in " ".join(run_cli("detect", "--help").stdout.split())
    from appliance.commands.detect import DEFAULT_MIN_SCORE
    assert DEFAULT_MIN_SCORE == default


def test_annotate_into_an_existing_file_is_a_usage_error(tmp_path):
    target = tmp_path / "taken"
    target.write_text("")
    result = run_cli("detect", "--annotate", target, GOLDEN)
    assert result.returncode == 2
    assert "--annotate {}: exists and is not a folder".format(target) in result.stderr


def test_two_inputs_with_the_same_name_get_distinct_annotated_images(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "g.png").write_bytes(open(GOLDEN, "rb").read())
    result = run_cli("detect", "--annotate", tmp_path / "out", tmp_path / "a" / "g.png", tmp_path / "b" / "g.png")
    assert result.returncode == 0, result.stderr
    written = re.findall(r"annotated: (.*)", result.stdout)
    assert written == [str(tmp_path / "out" / "g.faces.jpg"), str(tmp_path / "out" / "g-2.faces.jpg")]
    assert all(os.path.getsize(path) > 0 for path in written)


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue() + err.getvalue()


WORDS = ["check-config", "detect", "engines", "build", "list", "calibrate", "demo", "--config", "--json",
         "--annotate", "--backend", "--threads", "--min-score", "--precision", "--cache-dir", "--images", "--out",
         "--broker", "--trt-version", "--strict", "--force", "--log-level", "-1", "0", "1.5", "nan", "inf", "",
         "auto", "int8", "tensorrt", "x:y", "127.0.0.1:0", "[::1]:99999", "/dev/zero", "/dev/null", "/", "/tmp",
         "/nonexistent", GOLDEN, "\x00", "é", "--", "-"]


EXAMPLES = 300


def test_any_command_line_gets_an_exit_code_and_never_a_traceback():
    """Generated command lines; what this run measured (how many ran, how many ended in a traceback or an
    exit code other than 0, 1, 2) is recorded for docs/reliability.md, a failing run's figures too."""
    seen = {"examples": 0, "tracebacks": 0, "other_exit_codes": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(argv=st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=6))
    def one_command_line(argv):
        if argv[:1] == ["demo"] or "build" in argv:
            argv = ["check-config"] + argv  # the demo and builds run for seconds; their options are tested above
        try:
            code, output = call(argv)
        except SystemExit as exc:  # argparse ends --help and usage errors this way
            code, output = exc.code, ""
        seen["examples"] += 1
        seen["tracebacks"] += cli.INTERNAL_ERROR in output or "Traceback" in output
        seen["other_exit_codes"] += code not in (0, 1, 2)
        assert code in (0, 1, 2), (argv, code, output)
        assert cli.INTERNAL_ERROR not in output and "Traceback" not in output, (argv, output)
    try:
        one_command_line()
    finally:
        record("hostile command lines", **seen)
    assert seen["examples"] >= EXAMPLES


def test_demo_with_a_broker_that_rejects_it_fails_instead_of_claiming_success(tmp_path):
    from brokers import Mosquitto
    broker = Mosquitto(tmp_path, "allow_anonymous false\n").start()
    try:
        result = run_cli("demo", "--broker", "127.0.0.1:{}".format(broker.port), "--out", tmp_path / "d.jpg",
                         "--cache-dir", tmp_path / "engines", timeout=120)
    finally:
        broker.stop()
    assert result.returncode == 1 and "the broker refused the connection" in result.stderr
    assert "recall 1.000" not in result.stdout


def test_demo_refuses_an_output_it_could_not_write_before_running(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "result", timeout=60)
    assert result.returncode == 2 and "name an image file ending in .jpg" in result.stderr
    assert "frames processed" not in result.stdout


def test_annotated_images_that_cannot_be_written_are_named_and_the_rest_goes_on(tmp_path):
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for image in images:
        image.write_bytes(open(GOLDEN, "rb").read())
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.faces.jpg").mkdir()  # a folder where the first output belongs
    result = run_cli("detect", "--annotate", out, *images)
    assert result.returncode == 1
    assert "a.faces.jpg: is a folder, not a file" in result.stderr
    assert result.stdout.count("4 faces") == 2 and "annotated: {}".format(out / "b.faces.jpg") in result.stdout


def test_a_full_standard_output_is_one_clear_line_and_exit_1():
    import subprocess
    import sys
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "appliance", "detect", GOLDEN], stdout=full,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "facewatch detect: cannot write to standard output: No space left on device"


def test_the_command_line_offers_the_configurations_precisions_and_backends():
    """One vocabulary: `ctl rebuild`, `engines build` and `detect` choose from engine.precision's and
    engine.backend's own choices (appliance.backends), not from lists of their own."""
    def choices(words, option):
        parser = cli.build_parser()
        for word in words:
            parser = next(a for a in parser._actions if a.dest in ("command", "action")).choices[word]
        return next(a for a in parser._actions if option in a.option_strings).choices
    engine = SCHEMA["engine"]
    assert choices(["ctl", "rebuild"], "--precision") is engine["precision"].choices
    assert choices(["engines", "build"], "--precision") is engine["precision"].choices
    assert choices(["engines", "build"], "--backend") is engine["backend"].choices
    assert choices(["detect"], "--backend") is engine["backend"].choices
