"""TensorRT at run time: an engine deserialised, its tensors bound to pycuda buffers, inference on a stream.
Binding API + execute_async_v2 on 8.2/8.4, tensor API + execute_async_v3 from 8.5 (by hasattr)."""
import logging
import os

import numpy as np
import tensorrt as trt

from appliance.backends.base import ON_DEVICE, InferenceSession
from appliance.backends.trt_common import TensorRTError, make_logger, numpy_dtype, require

log = logging.getLogger(__name__)
KERNEL_CACHE = "cuda-kernels"   # beside the engine: pycuda's cache of the compiled preprocessing kernel


def io_specs(engine, context, input_shape):
    """[(name, shape, dtype, is_input)], input shapes set on the context first."""
    if hasattr(engine, "num_io_tensors"):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            if not context.set_input_shape(name, input_shape):
                raise TensorRTError("set_input_shape({}, {}) refused".format(name, input_shape))
        return [(n, tuple(context.get_tensor_shape(n)), numpy_dtype(engine.get_tensor_dtype(n)), n in inputs)
                for n in names]
    specs = []
    for index in range(engine.num_bindings):
        if engine.binding_is_input(index):
            if not context.set_binding_shape(index, input_shape):
                raise TensorRTError("set_binding_shape({}, {}) refused".format(index, input_shape))
    for index in range(engine.num_bindings):
        specs.append((engine.get_binding_name(index), tuple(context.get_binding_shape(index)),
                      numpy_dtype(engine.get_binding_dtype(index)), engine.binding_is_input(index)))
    return specs


class TrtSession(InferenceSession):
    def __init__(self, path, input_shape):
        from appliance.backends.cuda_buffers import CudaContext, IOBuffers
        self._cuda = CudaContext()
        self._buffers = None
        self._loader = None
        self._kernel_module = None
        self._kernel_cache = os.path.join(os.path.dirname(os.path.abspath(path)), KERNEL_CACHE)
        try:
            with self._cuda:
                self._runtime = require(trt.Runtime(make_logger()), "Runtime")
                with open(path, "rb") as f:
                    self._engine = require(self._runtime.deserialize_cuda_engine(f.read()),
                                           "deserialize_cuda_engine: the engine does not fit this TensorRT or GPU")
                self._context = require(self._engine.create_execution_context(), "create_execution_context")
                specs = io_specs(self._engine, self._context, list(input_shape))
                self._buffers = IOBuffers(specs)
                self._bind()
        except BaseException:
            self.close()
            raise
        self.input_name = self._buffers.inputs[0]
        self.output_names = tuple(self._buffers.outputs)

    def _bind(self):
        if hasattr(self._context, "execute_async_v3"):
            for name in self._buffers.inputs + self._buffers.outputs:
                if not self._context.set_tensor_address(name, self._buffers.address(name)):
                    raise TensorRTError("set_tensor_address({}) refused".format(name))
            self._bindings = None
        else:
            order = [self._engine.get_binding_name(i) for i in range(self._engine.num_bindings)]
            self._bindings = [self._buffers.address(name) for name in order]

    def frame_loader(self, width, height, mean):
        """The CUDA letterbox kernel writing into this engine's input buffer; None (and `preprocessing` says
        why) where it cannot run: the CPU path then feeds the engine as before."""
        from appliance.backends.cuda_preprocess import CudaFrameLoader, KernelUnavailable, compile_kernel
        host = self._buffers.host[self.input_name]
        if host.dtype != np.float32 or host.shape != (1, 3, height, width):
            self.preprocessing = "cpu: the engine's input is {} {}, not float32 (1, 3, {}, {})".format(
                host.dtype, list(host.shape), height, width)
            return None
        with self._cuda:
            try:
                kernel, self._kernel_module = compile_kernel(self._kernel_cache)
            except KernelUnavailable as exc:
                self.preprocessing = "cpu: {}".format(exc)
                log.warning("engine: preprocessing on the CPU: %s", exc)
                return None
            self._loader = CudaFrameLoader(self._cuda, kernel, self._buffers.stream, self._buffers.device[self.input_name],
                                           width, height, mean)
        self.preprocessing = "gpu"
        return self._loader

    def infer(self, tensor):
        with self._cuda:
            if tensor is not ON_DEVICE:
                self._buffers.upload({self.input_name: tensor})
            elif self._loader is None:
                raise TensorRTError("no frame was loaded on the GPU")
            if self._bindings is None:
                ok = self._context.execute_async_v3(self._buffers.stream.handle)
            else:
                ok = self._context.execute_async_v2(self._bindings, self._buffers.stream.handle)
            if not ok:
                raise TensorRTError("TensorRT failed to run the engine")
            return self._buffers.download()

    def close(self):
        if self._buffers is not None:
            with self._cuda:
                if self._loader is not None:
                    self._loader.free()
                    self._loader = None
                self._kernel_module = None
                self._buffers.free()
            self._buffers = None
        self._context = self._engine = self._runtime = None
        if self._cuda is not None:
            self._cuda.release()
            self._cuda = None
