"""What the README and docs/ tell a newcomer to type or believe holds on a fresh clone (issue 19)."""
import glob
import os
import re

from conftest import REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")


def text_of(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def quick_loop():
    """The shell block that follows "The quick loop" in the README, its continuation lines joined."""
    after = text_of(README).split("The quick loop", 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S).group(1)
    return block.replace("\\\n", " ")


def test_the_quick_loop_makes_its_own_venv_and_names_test_files_that_exist():
    commands = quick_loop()
    assert ".venv-newest" not in text_of(README), "only the 15-minute .ci/run makes .venv-newest"
    assert "python3 -m venv .venv" in commands and "-e '.[cpu,test]'" in commands
    named = re.findall(r"tests/\S+\.py", commands)
    assert len(named) >= 10
    missing = [path for path in named if not os.path.isfile(os.path.join(REPO_ROOT, path))]
    assert missing == []


def test_the_quick_loop_needs_no_broker():
    """Its files start no mosquitto (a fresh host may have none): no broker fixture, no broker started."""
    for path in re.findall(r"tests/\S+\.py", quick_loop()):
        source = text_of(os.path.join(REPO_ROOT, path))
        uses_a_broker = re.search(r"def test\w*\([^)]*\bmosquitto\b", source) or re.search(r"\bMosquitto\(", source)
        assert not uses_a_broker, path


def test_every_page_that_says_mosquitto_sub_or_pub_names_the_package_that_brings_them():
    for path in [README] + sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))):
        text = text_of(path)
        if "mosquitto_sub" in text or "mosquitto_pub" in text:
            assert "mosquitto-clients" in text, os.path.relpath(path, REPO_ROOT)


def test_the_readme_says_what_the_code_does_with_frames_and_int8():
    text = " ".join(text_of(README).split())
    assert "640×640" not in text and "letterboxes each frame" not in text
    assert "this AVX2 CPU" not in text and "only on CPUs with VNNI" not in text
    assert "On ONNX Runtime `auto` measures" in text
