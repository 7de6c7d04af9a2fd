"""What a wheel carries: every package folder, and every shipped file the code looks for."""
import configparser
import fnmatch
import os

from conftest import REPO_ROOT


def test_every_folder_of_the_package_is_a_package_that_setuptools_finds():
    for folder, _, names in os.walk(os.path.join(REPO_ROOT, "appliance")):
        if "__pycache__" in folder or not any(n.endswith(".py") for n in names):
            continue
        assert "__init__.py" in names, "{} has no __init__.py: `packages = find:` leaves it out of the wheel".format(
            os.path.relpath(folder, REPO_ROOT))


def test_every_file_in_engines_and_the_demo_is_installed_as_data():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO_ROOT, "setup.cfg"))
    listed = {line.strip() for value in config["options.data_files"].values() for line in value.splitlines() if line}
    for folder in ("engines", os.path.join("examples", "demo")):
        for name in os.listdir(os.path.join(REPO_ROOT, folder)):
            assert os.path.join(folder, name) in listed, "{} is not in setup.cfg [options.data_files]".format(name)
    assert "examples/facewatch.toml" in listed


def test_every_file_in_the_package_that_is_not_python_is_package_data():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO_ROOT, "setup.cfg"))
    patterns = {package: value.split() for package, value in config["options.package_data"].items()}
    for folder, _, names in os.walk(os.path.join(REPO_ROOT, "appliance")):
        package = os.path.relpath(folder, REPO_ROOT).replace(os.sep, ".")
        for name in names:
            if "__pycache__" in folder or name.endswith(".py"):
                continue
            assert any(fnmatch.fnmatch(name, p) for p in patterns.get(package, ())), \
                "{} is not in setup.cfg [options.package_data]".format(os.path.join(folder, name))
