"""Page-locked host buffers, device buffers and a stream, owned by a context manager (pycuda).

Works with pycuda 2022.1 (Python 3.6, JetPack 4.6) and current releases. The CUDA context is the
device's primary context, pushed around each use, so any thread (the pipeline's inference thread) can
run inference on buffers allocated by another.
"""
import numpy as np
import pycuda.driver as cuda


class CudaContext:
    """The primary context of one device; `with context:` makes it current in this thread."""

    def __init__(self, device_index=0):
        cuda.init()
        self.device = cuda.Device(device_index)
        self._context = self.device.retain_primary_context()

    def __enter__(self):
        self._context.push()
        return self

    def __exit__(self, *exc_info):
        cuda.Context.pop()

    def release(self):
        self._context.detach()

    def name(self):
        return self.device.name()

    def compute_capability(self):
        return self.device.compute_capability()


class IOBuffers:
    """One host/device pair per named tensor and one stream. Call inside `with CudaContext`."""

    def __init__(self, specs):
        """specs: [(name, shape, numpy dtype, is_input)]"""
        self.stream = cuda.Stream()
        self.host = {}
        self.device = {}
        self.inputs = []
        self.outputs = []
        try:
            for name, shape, dtype, is_input in specs:
                count = int(np.prod(shape))
                self.host[name] = cuda.pagelocked_empty(count, dtype).reshape(shape)
                self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
                (self.inputs if is_input else self.outputs).append(name)
        except BaseException:
            self.free()
            raise

    def address(self, name):
        return int(self.device[name])

    def upload(self, arrays):
        for name in self.inputs:
            np.copyto(self.host[name], arrays[name], casting="same_kind")
            cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)

    def download(self):
        for name in self.outputs:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        return {name: self.host[name].copy() for name in self.outputs}

    def free(self):
        for allocation in self.device.values():
            allocation.free()
        self.device = {}
        self.host = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.free()
