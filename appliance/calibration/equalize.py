"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", ICCV 2019).

For Conv1 -> LeakyRelu/Relu -> Conv2, the activation is positively homogeneous: scaling output channel
c of Conv1 (weights and bias) by 1/s_c and input channel c of Conv2 by s_c leaves the function
unchanged. Here s_c balances the channel's activation range a_c (measured on the calibration images)
against its range w_c in Conv2's weights: both become sqrt(a_c * w_c), so no channel is tiny next to
its neighbours, which is what per-tensor INT8 activations need (MobileNet's folded batch norms leave
channels 60x apart) while per-channel INT8 weights absorb the rest.
The tensors keep their names, so a calibration table made on the equalized model names the same tensors.
"""
import numpy as np
from onnx import numpy_helper

HOMOGENEOUS_ACTIVATIONS = ("Relu", "LeakyRelu")


def equalize(model, channel_max):
    """Equalizes every Conv -> activation -> Conv(s) chain of `model` in place; returns how many.

    channel_max: {activated tensor name: max |x| per channel over the calibration images}.
    """
    weights = {init.name: init for init in model.graph.initializer}
    pairs = equalizable_pairs(model)
    for first, activated, consumers in pairs:
        equalize_pair(weights, first, consumers, channel_max[activated])
    return len(pairs)


def activated_tensors(model):
    return [activated for _, activated, _ in equalizable_pairs(model)]


def equalizable_pairs(model):
    """[(conv node, its activated output, [conv nodes reading it])] where nothing else reads either tensor
    and no other node shares their weights."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {output.name for output in model.graph.output}
    constants = {init.name for init in model.graph.initializer}

    def own_weights(conv):
        return all(name in constants and len(consumers[name]) == 1 for name in conv.input[1:])

    pairs = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.output[0] in outputs or not own_weights(node):
            continue
        readers = consumers.get(node.output[0], [])
        if len(readers) != 1 or readers[0].op_type not in HOMOGENEOUS_ACTIVATIONS:
            continue
        activated = readers[0].output[0]
        next_convs = consumers.get(activated, [])
        if activated in outputs or not next_convs or any(
                reader.op_type != "Conv" or reader.input[0] != activated or not own_weights(reader)
                for reader in next_convs):
            continue
        pairs.append((node, activated, next_convs))
    return pairs


def group_count(node):
    return next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)


def input_channel_ranges(weights, group):
    """Per input channel of a Conv, the max |w| reading it (grouped and depthwise convs included)."""
    out_channels, in_per_group = weights.shape[:2]
    per_group_out = out_channels // group
    ranges = np.zeros(in_per_group * group)
    for g in range(group):
        block = np.abs(weights[g * per_group_out:(g + 1) * per_group_out])
        ranges[g * in_per_group:(g + 1) * in_per_group] = block.max(axis=(0,) + tuple(range(2, weights.ndim)))
    return ranges


def scale_input_channels(weights, group, scale):
    out_channels, in_per_group = weights.shape[:2]
    per_group_out = out_channels // group
    scaled = weights.copy()
    shape = (1, in_per_group) + (1,) * (weights.ndim - 2)
    for g in range(group):
        part = scale[g * in_per_group:(g + 1) * in_per_group].reshape(shape)
        scaled[g * per_group_out:(g + 1) * per_group_out] *= part
    return scaled


def equalize_pair(weights, first, consumers, activation_max):
    """s_c = sqrt(a_c / w_c): the activation range a_c and the next weights' range w_c both become
    sqrt(a_c * w_c) (SmoothQuant's balance, alpha 0.5, across a positively homogeneous activation)."""
    w1 = numpy_helper.to_array(weights[first.input[1]])
    b1 = numpy_helper.to_array(weights[first.input[2]])
    second = [(node, numpy_helper.to_array(weights[node.input[1]]), group_count(node)) for node in consumers]
    w2_range = np.max([input_channel_ranges(w, group) for _, w, group in second], axis=0)
    valid = (activation_max > 0) & (w2_range > 0)
    scale = np.ones(len(w2_range))
    scale[valid] = np.sqrt(activation_max[valid] / w2_range[valid])
    shape = (-1,) + (1,) * (w1.ndim - 1)
    replace(weights[first.input[1]], (w1 / scale.reshape(shape)).astype(np.float32))
    replace(weights[first.input[2]], (b1 / scale).astype(np.float32))
    for node, w2, group in second:
        replace(weights[node.input[1]], scale_input_channels(w2, group, scale).astype(np.float32))


def replace(initializer, values):
    initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
