#!/usr/bin/env python3
"""INT8 against FP32 on the held-out images: do the INT8 detections stay those of FP32, and how fast?

    python3 scripts/make_calibration_images.py            # once: makes .cache/calibration-images/heldout
    python3 bench/int8_vs_fp32.py [--images DIR] [--qdq PATH] [--threads N]

FP32 (the shipped ONNX on ONNX Runtime) is the reference. INT8 is the shipped Q/DQ model on ONNX Runtime,
the same graph TensorRT 11 builds. Both go through the same pre- and post-processing (min score 0.75).
  recall / precision  INT8 faces matched one-to-one to FP32 faces at IoU >= 0.5
  mean IoU            over the matched pairs
  landmark error      mean distance of the 5 landmarks of matched pairs, in pixels and in % of the
                      face size sqrt(w*h) of the FP32 box
  speed               inference only (no pre/post-processing), median of every image's best of
                      --repeats runs, the two models interleaved on the same inputs
Exit 1 when recall or precision is below the target (0.97).
"""
import argparse
import os
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from appliance.backends.ort_backend import OrtSession  # noqa: E402
from appliance.calibration.image_set import image_paths  # noqa: E402
from appliance.engine.detector import Detector  # noqa: E402
from appliance.engine.evaluation import greedy_matches  # noqa: E402
from appliance.images import read_image  # noqa: E402
from appliance.manifest import load_model  # noqa: E402

TARGET = 0.97
DEFAULT_IMAGES = os.path.join(REPO_ROOT, ".cache", "calibration-images", "heldout")


def best_time(function, argument, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(argument)
        times.append(time.perf_counter() - started)
    return min(times)


def compare(reference, candidate):
    """(matched pairs, INT8 count, FP32 count, landmark errors px, landmark errors %)"""
    pairs = greedy_matches(candidate.boxes, reference.boxes) if len(candidate.boxes) and len(reference.boxes) else []
    pixels, relative = [], []
    for found, expected, _ in pairs:
        box = reference.boxes[expected]
        size = np.sqrt(max(box[2] - box[0], 1e-6) * max(box[3] - box[1], 1e-6))
        distance = np.linalg.norm(candidate.landmarks[found] - reference.landmarks[expected], axis=1).mean()
        pixels.append(distance)
        relative.append(100.0 * distance / size)
    return pairs, pixels, relative


def run(paths, model, qdq_path, threads, repeats):
    fp32 = Detector(OrtSession(model.onnx_path, threads), model)
    int8 = Detector(OrtSession(qdq_path, threads), model)
    totals = {"fp32": 0, "int8": 0, "matched": 0}
    ious, pixels, relative, fp32_times, int8_times = [], [], [], [], []
    for path in paths:
        frame = read_image(path)
        tensor, letterbox = fp32.preprocess(frame)
        reference = fp32.postprocess(fp32.infer(tensor), letterbox)
        candidate = int8.postprocess(int8.infer(tensor), letterbox)
        pairs, image_pixels, image_relative = compare(reference, candidate)
        totals["fp32"] += len(reference.boxes)
        totals["int8"] += len(candidate.boxes)
        totals["matched"] += len(pairs)
        ious.extend(iou for _, _, iou in pairs)
        pixels.extend(image_pixels)
        relative.extend(image_relative)
        fp32_times.append(best_time(fp32.infer, tensor, repeats))
        int8_times.append(best_time(int8.infer, tensor, repeats))
    fp32.close()
    int8.close()
    return {
        "images": len(paths), "fp32_faces": totals["fp32"], "int8_faces": totals["int8"],
        "recall": totals["matched"] / float(totals["fp32"] or 1),
        "precision": totals["matched"] / float(totals["int8"] or 1),
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "landmark_px": float(np.mean(pixels)) if pixels else 0.0,
        "landmark_pct": float(np.mean(relative)) if relative else 0.0,
        "fp32_ms": 1000 * float(np.median(fp32_times)), "int8_ms": 1000 * float(np.median(int8_times)),
    }


def print_table(result, threads):
    ratio = result["fp32_ms"] / result["int8_ms"]
    print("| held-out images | FP32 faces | INT8 faces | recall | precision | mean IoU | landmark error |")
    print("|---|---|---|---|---|---|---|")
    print("| {images} | {fp32_faces} | {int8_faces} | {recall:.3f} | {precision:.3f} | {mean_iou:.3f} "
          "| {landmark_px:.2f} px ({landmark_pct:.2f} % of face size) |".format(**result))
    print()
    print("| inference, {} | FP32 ms | INT8 ms | INT8/FP32 speed |".format(
        "{} threads".format(threads) if threads else "ORT default threads"))
    print("|---|---|---|---|")
    print("| ONNX Runtime CPU | {:.1f} | {:.1f} | {:.2f}x |".format(result["fp32_ms"], result["int8_ms"], ratio))
    print()
    for name in ("recall", "precision"):
        verdict = "meets" if result[name] >= TARGET else "BELOW"
        print("{} {:.3f} {} the target {:.2f}".format(name, result[name], verdict, TARGET))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="held-out images (default: %(default)s)")
    parser.add_argument("--qdq", help="the INT8 Q/DQ model (default: the one in engines/manifest.json)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not os.path.isdir(args.images):
        parser.exit(2, "{} does not exist: run python3 scripts/make_calibration_images.py first\n".format(args.images))
    model = load_model()
    qdq_path = args.qdq or model.qdq_path
    if not qdq_path:
        parser.exit(2, "the manifest lists no Q/DQ model; give --qdq\n")
    result = run(image_paths(args.images), model, qdq_path, args.threads, args.repeats)
    print_table(result, args.threads)
    return 0 if min(result["recall"], result["precision"]) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
