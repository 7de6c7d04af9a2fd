"""Matching detections to reference boxes: recall and precision at an IoU threshold."""
from typing import NamedTuple

import numpy as np

from appliance.models.detections import box_iou

MatchCounts = NamedTuple("MatchCounts", [
    ("true_positives", int), ("false_positives", int), ("false_negatives", int), ("mean_iou", float)])


def greedy_matches(found, reference, min_iou=0.5):
    """[(found index, reference index, iou)] matched one-to-one, best IoU first."""
    iou = box_iou(found, reference)
    pairs = []
    used_found, used_reference = set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if i not in used_found and j not in used_reference:
            used_found.add(i)
            used_reference.add(j)
            pairs.append((int(i), int(j), float(iou[i, j])))
    return pairs


class Scores(MatchCounts):
    @property
    def recall(self):
        total = self.true_positives + self.false_negatives
        return self.true_positives / total if total else 1.0

    @property
    def precision(self):
        total = self.true_positives + self.false_positives
        return self.true_positives / total if total else 1.0


def match_counts(frames, min_iou=0.5):
    """frames: [(found boxes, reference boxes)] -> Scores summed over all frames."""
    tp = fp = fn = 0
    ious = []
    for found, reference in frames:
        found = np.asarray(found, np.float64).reshape(-1, 4)
        reference = np.asarray(reference, np.float64).reshape(-1, 4)
        pairs = greedy_matches(found, reference, min_iou) if len(found) and len(reference) else []
        tp += len(pairs)
        fp += len(found) - len(pairs)
        fn += len(reference) - len(pairs)
        ious.extend(iou for _, _, iou in pairs)
    return Scores(tp, fp, fn, float(np.mean(ious)) if ious else 0.0)
