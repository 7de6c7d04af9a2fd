"""Activation statistics of the FP32 model over calibration images, read with ONNX Runtime."""
import numpy as np

from appliance.calibration import graph
from appliance.calibration.entropy import HISTOGRAM_BINS, entropy_amax


class RangeCollector:
    """Pass 1: max|x| of every tensor. Pass 2: |x| histograms over [0, that max]. Then amax by entropy."""

    def __init__(self, names):
        self.names = list(names)
        self.max_abs = dict.fromkeys(self.names, 0.0)
        self.histograms = {name: np.zeros(HISTOGRAM_BINS, np.int64) for name in self.names}

    def observe_max(self, activations):
        for name, values in activations.items():
            if values.size:
                self.max_abs[name] = max(self.max_abs[name], float(np.abs(values).max()))

    def observe_histograms(self, activations):
        for name, values in activations.items():
            top = self.max_abs[name]
            if top <= 0 or not values.size:
                continue
            bins = np.minimum((np.abs(values.ravel()) * (HISTOGRAM_BINS / top)).astype(np.int64), HISTOGRAM_BINS - 1)
            self.histograms[name] += np.bincount(bins, minlength=HISTOGRAM_BINS)

    def amax(self, name):
        return entropy_amax(self.histograms[name], self.max_abs[name])


class ActivationReader:
    """Runs the FP32 model and returns every activation tensor by its ONNX name."""

    def __init__(self, model, threads=0):
        import onnxruntime
        from appliance.backends.ort_backend import session_options
        self.names = graph.activation_names(model)
        self.input_name = self.names[0]
        self._session = onnxruntime.InferenceSession(
            graph.with_outputs(model, self.names).SerializeToString(), sess_options=session_options(threads),
            providers=["CPUExecutionProvider"])

    def __call__(self, tensor):
        values = self._session.run(self.names, {self.input_name: tensor})
        return dict(zip(self.names, values))


class ChannelMaxCollector:
    """max |x| per channel (axis 1) of some tensors: what cross-layer equalization balances."""

    def __init__(self, names):
        self.channel_max = dict.fromkeys(names)

    def observe(self, activations):
        for name, previous in self.channel_max.items():
            values = np.abs(activations[name])
            current = values.max(axis=tuple(i for i in range(values.ndim) if i != 1))
            self.channel_max[name] = current if previous is None else np.maximum(previous, current)
