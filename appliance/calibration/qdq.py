"""The INT8 Q/DQ model: the FP32 ONNX with QuantizeLinear/DequantizeLinear pairs, for TensorRT 11
(explicit quantization) and ONNX Runtime.

- activations: per-tensor symmetric INT8 (zero point 0, scale = amax/127 from calibration), a Q/DQ
  pair on every activation a Conv reads: TensorRT's recommended placement (quantize the inputs of
  weighted layers; a Conv's output is fused with its activation and quantized by the next Conv's Q);
- Conv weights: per-output-channel symmetric INT8 (scale = max|w|/127 per channel), stored as INT8
  with a DequantizeLinear (axis 0); biases stay FP32, as TensorRT expects.
Opset 13 is the first with per-channel DequantizeLinear; the model is converted to it first.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from appliance.calibration import graph
from appliance.calibration.cache_format import INT8_MAX

QDQ_OPSET = 13


def make_qdq_model(fp32_model, amax_by_name):
    """The Q/DQ model of `fp32_model` (an onnx.ModelProto, not modified) with activation ranges `amax_by_name`."""
    model = convert_opset(fp32_model, QDQ_OPSET)
    graph.inline_constant_identities(model)
    quantize_conv_weights(model)
    quantize_activations(model, amax_by_name)
    onnx.checker.check_model(model)
    return model


def convert_opset(model, opset):
    """The model at `opset`. onnx < 1.12 (Python 3.6) cannot convert Softmax 12 -> 13 when the input's rank is
    unknown to its shape inference, as it is past this model's dynamic Reshape; it is then told the rank, as
    ONNX Runtime sees it on a small input."""
    try:
        return version_converter.convert_version(model, opset)
    except RuntimeError as exc:
        if "Softmax" not in str(exc):
            raise
    return version_converter.convert_version(with_softmax_input_ranks(model), opset)


def with_softmax_input_ranks(model, probe_side=64):
    import onnxruntime
    names = [node.input[0] for node in model.graph.node if node.op_type == "Softmax"]
    session = onnxruntime.InferenceSession(graph.with_outputs(model, names).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    probe = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else (1 if i == 0 else probe_side) for i, d in enumerate(probe.shape)]
    values = session.run(names, {probe.name: np.zeros(shape, np.float32)})
    annotated = onnx.ModelProto()
    annotated.CopyFrom(model)
    for name, value in zip(names, values):
        annotated.graph.value_info.append(helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, ["{}_{}".format(name, i) for i in range(value.ndim)]))
    return annotated


def per_channel_int8(weights):
    """(int8 weights, float32 scale per output channel) for symmetric per-channel quantization."""
    channel_max = np.abs(weights.reshape(weights.shape[0], -1)).max(axis=1)
    scale = np.where(channel_max > 0, channel_max / INT8_MAX, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (weights.ndim - 1)
    quantized = np.clip(np.round(weights / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return quantized, scale


def quantize_conv_weights(model):
    initializers = {init.name: init for init in model.graph.initializer}
    dequantized = {}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers:
            weight = node.input[1]
            if weight not in dequantized:
                dequantized[weight] = weight + "_dequantized"
                nodes.append(weight_dequantize_node(model, initializers[weight], dequantized[weight]))
            node.input[1] = dequantized[weight]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    unused = set(dequantized)
    kept = [init for init in model.graph.initializer if init.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def weight_dequantize_node(model, initializer, output):
    quantized, scale = per_channel_int8(numpy_helper.to_array(initializer).astype(np.float32))
    name = initializer.name
    model.graph.initializer.extend([
        numpy_helper.from_array(quantized, name + "_int8"),
        numpy_helper.from_array(scale, name + "_scale"),
        numpy_helper.from_array(np.zeros(len(scale), np.int8), name + "_zero_point"),
    ])
    return helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero_point"], [output],
                            name=name + "_DequantizeLinear", axis=0)


def quantize_activations(model, amax_by_name):
    conv_inputs = {node.input[0] for node in model.graph.node if node.op_type == "Conv"}
    chosen = [name for name in graph.activation_names(model) if name in amax_by_name and name in conv_inputs]
    dequantized = {name: name + "_dequantized" for name in chosen}
    for node in model.graph.node:
        if node.op_type not in graph.SHAPE_OPS:
            for index, name in enumerate(node.input):
                if name in dequantized:
                    node.input[index] = dequantized[name]
    inputs = {value.name for value in model.graph.input}
    nodes = []
    for name in chosen:
        if name in inputs:
            nodes.extend(activation_qdq_nodes(model, name, amax_by_name[name]))
    for node in model.graph.node:
        nodes.append(node)
        for name in node.output:
            if name in dequantized:
                nodes.extend(activation_qdq_nodes(model, name, amax_by_name[name]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def activation_qdq_nodes(model, name, amax):
    scale = np.float32(max(float(amax), 1e-8) / INT8_MAX)
    model.graph.initializer.extend([
        numpy_helper.from_array(np.array(scale, np.float32), name + "_scale"),
        numpy_helper.from_array(np.array(0, np.int8), name + "_zero_point"),
    ])
    inputs = [name + "_scale", name + "_zero_point"]
    return [
        helper.make_node("QuantizeLinear", [name] + inputs, [name + "_quantized"], name=name + "_QuantizeLinear"),
        helper.make_node("DequantizeLinear", [name + "_quantized"] + inputs, [name + "_dequantized"],
                         name=name + "_DequantizeLinear"),
    ]

