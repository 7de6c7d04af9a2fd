"""The tensors of an ONNX model that carry activations: what TensorRT quantizes and the table names.

An activation is a float tensor computed from the network input, not through a Shape node (shape
arithmetic, such as Resize's sizes, is not data). TensorRT's ONNX parser keeps these names.
"""
import onnx
from onnx import TensorProto

SHAPE_OPS = ("Shape", "Size")


def load(path):
    return onnx.load(path)


def float_tensors(model):
    """Names of the float tensors of `model`, by ONNX shape inference (dynamic sizes are fine)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {value.name for value in values if value.type.tensor_type.elem_type == TensorProto.FLOAT}


def activation_names(model):
    """Activation tensor names in graph order, the network inputs first."""
    constants = {init.name for init in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in constants]
    floats = float_tensors(model)
    data = set(inputs)
    order = list(inputs)
    for node in model.graph.node:
        if node.op_type in SHAPE_OPS or not any(name in data for name in node.input):
            continue
        for name in node.output:
            if name in floats:
                data.add(name)
                order.append(name)
    return order


def inline_constant_identities(model):
    """Conv weights reached through Identity(initializer): point the Conv at the initializer itself."""
    constants = {init.name for init in model.graph.initializer}
    aliases = {node.output[0]: node.input[0] for node in model.graph.node
               if node.op_type == "Identity" and node.input[0] in constants}
    kept = [node for node in model.graph.node if node.op_type != "Identity" or node.output[0] not in aliases]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in aliases:
                node.input[index] = aliases[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def with_outputs(model, names):
    """A copy of `model` that also outputs `names` (to read activations with ONNX Runtime)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {output.name for output in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return copy
