"""Calibration as a chain of passes of FP32 inference over the images:

  1. channels    max |x| per channel of the tensors between two convolutions
  2. equalize    cross-layer equalization with those ranges (the function is unchanged)
  3. ranges      max |x| of every activation of the equalized model
  4. histograms  |x| histograms over [0, that max]
  5. entropy     amax per tensor (EntropyCalibration2's method)
Tensors the manifest keeps out of INT8 (int8_keep_float) get no range: absent from the table, TensorRT
runs the layers that read or write them in FP16; the Q/DQ model leaves them unquantized.
"""
import time
from typing import NamedTuple

from appliance.calibration import equalize, graph
from appliance.calibration.collector import ActivationReader, ChannelMaxCollector, RangeCollector
from appliance.images import read_image
from appliance.models import load_family

PHASES = (("channels", 0.15), ("ranges", 0.2), ("histograms", 0.3), ("entropy", 0.35))

Calibration = NamedTuple("Calibration", [
    ("model", object), ("amax", dict), ("equalized_pairs", int), ("kept_float", tuple)])


def kept_float(names, prefixes):
    """The tensors left out of INT8: those whose names start with one of `prefixes`."""
    return tuple(name for name in names if name.startswith(tuple(prefixes)))


class Progress:
    """Maps (phase, fraction of the phase) onto one bar with an ETA."""

    def __init__(self, report):
        self._report = report
        self._started = time.monotonic()
        starts = [sum(share for _, share in PHASES[:index]) for index in range(len(PHASES))]
        self._spans = {name: (start, share) for (name, share), start in zip(PHASES, starts)}

    def step(self, phase, fraction_of_phase):
        start, share = self._spans[phase]
        done = start + share * fraction_of_phase
        elapsed = time.monotonic() - self._started
        self._report(phase, done, elapsed * (1 - done) / done if done > 0.02 else None)


def over_images(reader, paths, preprocess, observe, progress, phase):
    """One pass: every image is read and preprocessed again rather than held (memory on a Nano)."""
    for index, path in enumerate(paths):
        tensor, _ = preprocess(read_image(path))
        observe(reader(tensor))
        progress.step(phase, (index + 1.0) / len(paths))


def calibrate(spec, paths, report, threads=0):
    """Calibration of the model `spec` names: its equalized FP32 graph and every activation's amax."""
    family = load_family(spec.family)
    progress = Progress(report)
    preprocess = family.Preprocessor(spec.input_width, spec.input_height, spec.mean)
    model = graph.load(spec.onnx_path)
    graph.inline_constant_identities(model)
    channels = ChannelMaxCollector(equalize.activated_tensors(model))
    over_images(ActivationReader(model, threads), paths, preprocess, channels.observe, progress, "channels")
    pairs = equalize.equalize(model, channels.channel_max)
    reader = ActivationReader(model, threads)
    collector = RangeCollector(reader.names)
    over_images(reader, paths, preprocess, collector.observe_max, progress, "ranges")
    over_images(reader, paths, preprocess, collector.observe_histograms, progress, "histograms")
    float_names = kept_float(collector.names, spec.int8_keep_float)
    quantized = [name for name in collector.names if name not in float_names]
    amax = {}
    for index, name in enumerate(quantized):
        amax[name] = collector.amax(name)
        progress.step("entropy", (index + 1.0) / len(quantized))
    return Calibration(model, amax, pairs, float_names)
