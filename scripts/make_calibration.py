#!/usr/bin/env python3
"""Make the shipped INT8 files: calibrate on the calibration set, copy the results into engines/ and
record them in engines/manifest.json. The same table is written once per TensorRT release it is for
(only the header differs).

    python3 scripts/make_calibration_images.py     # the image sets, once
    python3 scripts/make_calibration.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from appliance.calibration import cache_format  # noqa: E402
from appliance.calibration.image_set import image_paths  # noqa: E402
from appliance.files import file_sha256  # noqa: E402

IMAGES = os.path.join(REPO_ROOT, ".cache", "calibration-images", "calibration")
ENGINES = os.path.join(REPO_ROOT, "engines")
MODEL = "retinaface_mnet025"
# JetPack 6.1/6.2, 5.1, 4.6: the releases with fast INT8 (Xavier, Orin) and implicit quantization.
TRT_VERSIONS = ("10.3.0", "8.5.2", "8.2.1")


def main():
    work = tempfile.mkdtemp(prefix="facewatch-calibration-")
    table = os.path.join(work, "calibration.cache")
    subprocess.check_call([sys.executable, "-m", "appliance", "calibrate", "--images", IMAGES, "--out", table],
                          cwd=REPO_ROOT)
    amax = cache_format.read_table(table).amax
    entries = []
    for version in TRT_VERSIONS:
        name = "{}.trt-{}.calibration.cache".format(MODEL, cache_format.version_tag(version))
        with open(os.path.join(ENGINES, name), "w") as f:
            f.write(cache_format.format_table(amax, version))
        entries.append({"file": name, "sha256": file_sha256(os.path.join(ENGINES, name)),
                        "algorithm": cache_format.ALGORITHM, "trt_version": version})
    shipped = {}
    for suffix, target in ((".fp32.onnx", MODEL + ".int8-equalized.onnx"), (".qdq.onnx", MODEL + ".int8.qdq.onnx")):
        shutil.copyfile(os.path.join(work, "calibration" + suffix), os.path.join(ENGINES, target))
        shipped[suffix] = {"file": target, "sha256": file_sha256(os.path.join(ENGINES, target))}
    shutil.rmtree(work)
    manifest_path = os.path.join(ENGINES, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    entry = manifest["models"][MODEL]
    entry["calibration"] = entries
    entry["int8_onnx"] = shipped[".fp32.onnx"]
    entry["qdq"] = shipped[".qdq.onnx"]
    entry["calibration_images"] = ("scripts/make_calibration_images.py, calibration set ({} images); "
                                   "never the held-out set".format(len(image_paths(IMAGES))))
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print("engines/: {} tables, {}, {}".format(len(entries), entry["int8_onnx"]["file"], entry["qdq"]["file"]))


if __name__ == "__main__":
    main()
