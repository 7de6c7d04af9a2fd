import cv2
import numpy as np
import onnx

from appliance.calibration import equalize, graph
from appliance.calibration.collector import ActivationReader, ChannelMaxCollector


def channel_spread(model, tensor, names):
    """max/min over channels of each tensor's per-channel max |x|."""
    collector = ChannelMaxCollector(names)
    activations = ActivationReader(model)(tensor)
    collector.observe(activations)
    return {name: values.max() / max(values.min(), 1e-6) for name, values in collector.channel_max.items()}, \
        activations


def test_equalization_keeps_the_function_and_evens_out_the_channels(model, detector):
    tensor, _ = detector.preprocess(cv2.imread(model.golden["image"]))
    original = onnx.load(model.onnx_path)
    graph.inline_constant_identities(original)
    equalized = onnx.ModelProto()
    equalized.CopyFrom(original)
    names = equalize.activated_tensors(equalized)
    before, before_values = channel_spread(original, tensor, names)
    collector = ChannelMaxCollector(names)
    collector.observe(before_values)
    assert equalize.equalize(equalized, collector.channel_max) == len(names) > 20
    after, after_values = channel_spread(equalized, tensor, names)
    assert np.median([after[n] / before[n] for n in names]) < 0.5
    for name in model.output_names:
        np.testing.assert_allclose(after_values[name], before_values[name], atol=2e-3)
