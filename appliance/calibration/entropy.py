"""Entropy (KL divergence) calibration: the amax that loses least information in 8 bits.

The method TensorRT's EntropyCalibration2 applies (Migacz, "8-bit Inference with TensorRT", GTC 2017),
as NVIDIA's pytorch-quantization reproduces it (calib/histogram.py, _compute_amax_entropy):
  - a histogram of |x| over [0, max|x|] in HISTOGRAM_BINS bins, collected over every calibration image;
  - the first bin is replaced by the second, so the zeros of ReLU outputs do not dominate;
  - for every candidate i from FIRST_CANDIDATE to HISTOGRAM_BINS bins: P is the first i bins with the
    clipped tail added to the last, Q is those i bins merged into QUANTIZED_BINS levels and spread back
    over the bins that were non-empty; the candidate's cost is KL(P || Q);
  - amax is the right edge of the candidate with the least divergence (the widest one on ties).
"""
import numpy as np

HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128
FIRST_CANDIDATE = 128


def entropy_amax(histogram, max_abs):
    """amax for a |x| histogram of HISTOGRAM_BINS bins spanning [0, max_abs]."""
    if max_abs <= 0:
        return 1.0
    counts = np.asarray(histogram, np.float64).copy()
    if counts.sum() == 0:
        return float(max_abs)
    counts[0] = counts[1]
    tails = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tails[i] = counts[i:].sum()
    best_bins, best_divergence = len(counts), np.inf
    for bins in range(FIRST_CANDIDATE, len(counts) + 1):
        divergence = clipped_divergence(counts[:bins], tails[bins])
        if divergence <= best_divergence:
            best_bins, best_divergence = bins, divergence
    return float(max_abs) * best_bins / len(counts)


def clipped_divergence(kept, tail):
    """KL(P || Q) of clipping at len(kept) bins and quantizing them into QUANTIZED_BINS levels."""
    bins = len(kept)
    reference = kept.copy()
    reference[-1] += tail
    nonzero = kept > 0
    level = np.arange(bins) * QUANTIZED_BINS // bins
    level_sums = np.bincount(level, weights=kept, minlength=QUANTIZED_BINS)
    level_sizes = np.bincount(level, weights=nonzero, minlength=QUANTIZED_BINS)
    expanded = np.where(nonzero, level_sums[level] / np.maximum(level_sizes[level], 1), 0.0)
    return kl_divergence(reference, expanded)


def kl_divergence(p, q):
    p = p / p.sum()
    q_total = q.sum()
    if q_total == 0:
        return np.inf
    q = q / q_total
    support = p > 0
    if np.any(q[support] == 0):
        return np.inf
    return float(np.sum(p[support] * np.log(p[support] / q[support])))

