#!/usr/bin/env python3
"""Make the INT8 calibration image set and the held-out set, from public images whose licenses are known.

Faces (crops of public-domain / CC0 photographs):
  astronaut     scikit-image 0.26.0 astronaut.png: Eileen Collins, NASA photograph, public domain
  hopper        Pillow 13.0.0 Tests/images/hopper.png: Grace Hopper, US Navy photograph, public domain
  camera        scikit-image 0.26.0 camera.png: "cameraman", CC0 (Lav Varshney)
  grace_hopper  matplotlib 3.10.7 sample_data/grace_hopper.jpg: US Navy photograph, public domain
                (held-out set only: a photograph calibration never sees)
Backgrounds: scikit-image 0.26.0 coffee, rocket, chelsea, brick, grass, gravel, motorcycle_left,
hubble_deep_field (CC0 / public domain, see skimage/data/_fetchers.py).

Each image is a background crop at one of several frame sizes with 0-5 pasted faces, varied in scale
(faces of 16 to 320 network-input pixels), position, flip, rotation, lighting (gain, gamma, gradient,
colour cast), blur, noise and JPEG quality. The two sets use different seeds; the held-out set is for
the INT8 benchmark and is never used for calibration. Every image's recipe and its sources are written
to provenance.json beside the images.

    python3 scripts/make_calibration_images.py [--cache DIR] [--out DIR]
      -> DIR/calibration/NNNN.jpg (160 images), DIR/heldout/NNNN.jpg (80 images)
"""
import argparse
import json
import os
import random
import sys
import zipfile

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_media  # noqa: E402

MATPLOTLIB = "matplotlib==3.10.7"
BACKGROUND_FILES = ("brick.png", "grass.png", "gravel.png", "motorcycle_left.png", "hubble_deep_field.jpg")
BACKGROUNDS = ("coffee", "rocket", "chelsea", "brick", "grass", "gravel", "motorcycle_left", "hubble_deep_field")
FACE_CROPS = dict(make_media.FACE_CROPS, camera=(165, 85, 125, 145), grace_hopper=(140, 75, 250, 300))
SETS = {
    "calibration": {"seed": 20261121, "count": 160, "faces": ("astronaut", "hopper", "camera")},
    "heldout": {"seed": 7, "count": 80, "faces": ("astronaut", "hopper", "camera", "grace_hopper")},
}
FRAME_SIZES = ((640, 480), (1280, 720), (480, 640), (800, 600), (960, 540))
NETWORK_SIZE = 640
LICENSES = {
    "astronaut": "scikit-image 0.26.0 skimage/data/astronaut.png, NASA photograph, public domain",
    "hopper": "Pillow 13.0.0 Tests/images/hopper.png, US Navy photograph, public domain",
    "camera": "scikit-image 0.26.0 skimage/data/camera.png, CC0 (Lav Varshney)",
    "grace_hopper": "matplotlib 3.10.7 mpl-data/sample_data/grace_hopper.jpg, US Navy photograph, public domain",
    "backgrounds": "scikit-image 0.26.0 skimage/data/{coffee,rocket,chelsea,brick,grass,gravel,motorcycle_left,"
                   "hubble_deep_field}: CC0 or public domain",
}


def fetch_all(cache):
    images = make_media.fetch_sources(cache)
    with zipfile.ZipFile(make_media.fetch_package(cache, make_media.SKIMAGE, "scikit_image-*.whl")) as wheel:
        for name in BACKGROUND_FILES:
            images[os.path.splitext(name)[0]] = make_media.decode(wheel.read("skimage/data/" + name))
    with zipfile.ZipFile(make_media.fetch_package(cache, MATPLOTLIB, "matplotlib-*.whl")) as wheel:
        images["grace_hopper"] = make_media.decode(wheel.read("matplotlib/mpl-data/sample_data/grace_hopper.jpg"))
    return images


def background(image, size, rng):
    """A random crop of `image` resized to `size` (width, height)."""
    height, width = image.shape[:2]
    crop_width = int(width * rng.uniform(0.5, 1.0))
    crop_height = min(height, int(crop_width * size[1] / size[0])) or height
    x = rng.randint(0, width - crop_width)
    y = rng.randint(0, height - crop_height)
    return cv2.resize(image[y:y + crop_height, x:x + crop_width], size, interpolation=cv2.INTER_LINEAR)


def relight(patch, rng):
    """Gain, a left-right or top-bottom gradient and a colour cast."""
    height, width = patch.shape[:2]
    ramp = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(1.0, 1.3), width if rng.random() < 0.5 else height)
    gradient = ramp.reshape(1, -1, 1) if len(ramp) == width else ramp.reshape(-1, 1, 1)
    cast = np.array([rng.uniform(0.85, 1.15) for _ in range(3)]).reshape(1, 1, 3)
    return np.clip(patch.astype(np.float32) * gradient * cast, 0, 255).astype(np.uint8)


def rotated(patch, angle):
    height, width = patch.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    return cv2.warpAffine(patch, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def place_faces(canvas, images, face_boxes, names, rng):
    """Pastes 0-5 faces without overlap; returns their recipes with the face boxes in frame pixels."""
    frame_height, frame_width = canvas.shape[:2]
    to_frame = max(frame_width, frame_height) / float(NETWORK_SIZE)
    placed = []
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5))):
        name = rng.choice(names)
        crop_x, crop_y, crop_w, crop_h = FACE_CROPS[name]
        box = face_boxes[name]
        face_width = float(box[2] - box[0])
        target = np.exp(rng.uniform(np.log(16), np.log(320))) * to_frame
        scale = target / face_width
        width, height = int(crop_w * scale), int(crop_h * scale)
        if width < 4 or height < 4 or width >= frame_width or height >= frame_height:
            continue
        x, y = rng.randint(0, frame_width - width), rng.randint(0, frame_height - height)
        if any(x < p["at"][0] + p["size"][0] and p["at"][0] < x + width and
               y < p["at"][1] + p["size"][1] and p["at"][1] < y + height for p in placed):
            continue
        flip = rng.random() < 0.5
        angle = rng.uniform(-20, 20) if rng.random() < 0.3 else 0.0
        patch = cv2.resize(make_media.face_crop_of(images, name, FACE_CROPS), (width, height),
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        patch = relight(rotated(patch, angle) if angle else patch, rng)
        make_media.paste(canvas, patch, x, y, 1.0, flip)
        placed.append({"face": name, "at": [x, y], "size": [width, height], "flip": flip,
                       "rotation": round(angle, 1),
                       "box": make_media.placed_box(box, crop_w, x, y, scale, flip)})
    return placed


def finish(canvas, rng):
    """Global lighting (gain, gamma), then maybe blur and sensor noise."""
    gain, gamma = rng.uniform(0.35, 1.5), rng.uniform(0.6, 1.6)
    image = 255.0 * (np.clip(canvas.astype(np.float32) * gain, 0, 255) / 255.0) ** gamma
    recipe = {"gain": round(gain, 2), "gamma": round(gamma, 2), "blur": 0.0, "noise": 0.0}
    if rng.random() < 0.2:
        recipe["blur"] = round(rng.uniform(0.5, 2.0), 2)
        image = cv2.GaussianBlur(image, (0, 0), recipe["blur"])
    if rng.random() < 0.3:
        recipe["noise"] = round(rng.uniform(2, 10), 1)
        image = image + np.random.RandomState(rng.randint(0, 2 ** 31 - 1)).normal(0, recipe["noise"], image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), recipe


def make_set(images, face_boxes, name, out_dir):
    settings = SETS[name]
    rng = random.Random(settings["seed"])
    directory = os.path.join(out_dir, name)
    os.makedirs(directory, exist_ok=True)
    recipes = []
    for index in range(settings["count"]):
        size = rng.choice(FRAME_SIZES)
        backdrop = rng.choice(BACKGROUNDS)
        canvas = background(images[backdrop], size, rng)
        faces = place_faces(canvas, images, face_boxes, settings["faces"], rng)
        image, recipe = finish(canvas, rng)
        quality = rng.randint(60, 95)
        file_name = "{:04d}.jpg".format(index)
        cv2.imwrite(os.path.join(directory, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        recipes.append(dict(recipe, file=file_name, size=list(size), background=backdrop, jpeg_quality=quality,
                            faces=faces))
    with open(os.path.join(directory, "provenance.json"), "w") as f:
        json.dump({"made_by": "scripts/make_calibration_images.py", "set": name, "seed": settings["seed"],
                   "sources": LICENSES, "images": recipes}, f, indent=1)
        f.write("\n")
    print("{}: {} images, {} faces".format(directory, len(recipes), sum(len(r["faces"]) for r in recipes)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.join(make_media.REPO_ROOT, ".cache", "media-sources"))
    parser.add_argument("--out", default=os.path.join(make_media.REPO_ROOT, ".cache", "calibration-images"))
    args = parser.parse_args()
    images = fetch_all(args.cache)
    face_boxes = {name: make_media.source_face_box(images, name, FACE_CROPS) for name in FACE_CROPS}
    for name in SETS:
        make_set(images, face_boxes, name, args.out)


if __name__ == "__main__":
    main()
