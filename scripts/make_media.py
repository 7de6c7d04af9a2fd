#!/usr/bin/env python3
"""Make the media facewatch ships from public images whose licenses are known.

Sources (fetched with pip from PyPI; nothing is downloaded at run time by facewatch itself):
  scikit-image 0.26.0 wheel, skimage/data/:
    astronaut.png  Eileen Collins, NASA photograph: public domain
    camera.png     "cameraman", CC0 (Lav Varshney)
    coffee.png     CC0 (Rachel Michetti)
    chelsea.png    CC0 (Stefan van der Walt)  -- a cat: a face-like non-face
    rocket.jpg     SpaceX launch photo, released to the public domain
  Pillow 13.0.0 sdist, Tests/images/hopper.png: Grace Hopper, US Navy photograph: public domain

Writes engines/golden.png and its reference detections into engines/manifest.json (FP32, ONNX Runtime).

    python3 scripts/make_media.py golden [--cache DIR]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import cv2
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

SKIMAGE = "scikit-image==0.26.0"
PILLOW = "pillow==13.0.0"
SKIMAGE_FILES = ("astronaut.png", "camera.png", "coffee.png", "chelsea.png", "rocket.jpg")
# Face crops (x, y, w, h) in the source images, chosen by eye around the detected face.
FACE_CROPS = {
    "astronaut": (130, 20, 190, 210),
    "hopper": (28, 18, 70, 72),
}


def fetch_sources(cache):
    """Source images by name, BGR; downloads the two packages once into `cache`."""
    os.makedirs(cache, exist_ok=True)
    if not glob.glob(os.path.join(cache, "scikit_image-*.whl")):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "--only-binary=:all:", "-d", cache, SKIMAGE])
    if not glob.glob(os.path.join(cache, "pillow-*.tar.gz")):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "--no-binary=:all:", "-d", cache, PILLOW])
    images = {}
    with zipfile.ZipFile(glob.glob(os.path.join(cache, "scikit_image-*.whl"))[0]) as wheel:
        for name in SKIMAGE_FILES:
            images[os.path.splitext(name)[0]] = decode(wheel.read("skimage/data/" + name))
    with tarfile.open(glob.glob(os.path.join(cache, "pillow-*.tar.gz"))[0]) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("Tests/images/hopper.png"))
        images["hopper"] = decode(sdist.extractfile(member).read())
    return images


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def face_crop(images, name):
    x, y, w, h = FACE_CROPS[name]
    return images[name][y:y + h, x:x + w]


def paste(canvas, patch, x, y, scale, flip=False):
    patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if flip:
        patch = patch[:, ::-1]
    h, w = patch.shape[:2]
    canvas[y:y + h, x:x + w] = patch


def make_golden(images):
    """640x480: four faces from 35 to 110 px on a CC0 background."""
    canvas = cv2.resize(images["coffee"], (640, 480))
    paste(canvas, face_crop(images, "astronaut"), 20, 40, 0.9)
    paste(canvas, face_crop(images, "astronaut"), 300, 260, 0.45, flip=True)
    paste(canvas, face_crop(images, "hopper"), 420, 40, 2.2)
    paste(canvas, face_crop(images, "astronaut"), 540, 330, 0.38)
    return canvas


def reference_detections(image):
    from appliance.detections import faces_as_json
    from appliance.session import open_detector
    with open_detector(backend="onnxruntime") as detector:
        return faces_as_json(detector.detect(image), decimals=2)


def write_golden(images):
    engines = os.path.join(REPO_ROOT, "engines")
    golden = make_golden(images)
    cv2.imwrite(os.path.join(engines, "golden.png"), golden)
    manifest_path = os.path.join(engines, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    entry = manifest["models"][manifest["default_model"]]
    entry["golden"] = {
        "image": "golden.png",
        "provenance": "scripts/make_media.py: scikit-image coffee.png (CC0) background, astronaut.png (NASA, "
                      "public domain) and Pillow hopper.png (US Navy, public domain) faces",
        "detections": reference_detections(golden),
        "tolerances": {"min_iou": 0.9, "max_score_delta": 0.1, "min_score": 0.75},
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print("engines/golden.png: {} reference faces".format(len(entry["golden"]["detections"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["golden"])
    parser.add_argument("--cache", default=os.path.join(REPO_ROOT, ".cache", "media-sources"))
    args = parser.parse_args()
    images = fetch_sources(args.cache)
    if args.what == "golden":
        write_golden(images)


if __name__ == "__main__":
    main()
