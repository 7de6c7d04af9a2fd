"""Preprocessing on the GPU for the TensorRT path: one CUDA kernel letterboxes a BGR uint8 frame straight
into the engine's float32 NCHW input buffer (bilinear scale to the region at the top-left, minus the mean,
0 around it).

The frame is copied into a page-locked staging buffer and sent with one async copy; the kernel follows on
the same stream, so nothing waits for the host until the outputs come back. The sampling is OpenCV's
INTER_LINEAR (pixel centres aligned, edges clamped) with the scaled value rounded to an integer as OpenCV's
uint8 resize does, so the tensor matches the CPU Preprocessor to within one grey level (checked on a GPU
by scripts/gpu_check.py). The kernel is compiled once per session and cached on disk by pycuda
(SourceModule's cache_dir). Only pycuda 2022.1 APIs (the Nano's, Python 3.6).
"""
import os
import shutil

import numpy as np
import pycuda.driver as cuda

from appliance.backends.base import ON_DEVICE, FrameLoader

KERNEL_NAME = "letterbox_bgr_minus_mean"
KERNEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "letterbox.cu")
BLOCK = (32, 8, 1)
JETPACK_NVCC = "/usr/local/cuda/bin/nvcc"


class KernelUnavailable(RuntimeError):
    """The kernel cannot be compiled here (no nvcc, a compiler error); preprocessing stays on the CPU."""


def find_nvcc():
    """nvcc on PATH, else JetPack's /usr/local/cuda/bin/nvcc (systemd's PATH does not hold it)."""
    for candidate in (shutil.which("nvcc"), JETPACK_NVCC):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise KernelUnavailable("nvcc is not on PATH nor at {}".format(JETPACK_NVCC))


def compile_kernel(cache_dir):
    """The kernel function, compiled (or found in pycuda's cache in `cache_dir`). Call in a CUDA context."""
    from pycuda.compiler import SourceModule
    nvcc = find_nvcc()
    try:
        os.makedirs(cache_dir, exist_ok=True)   # pycuda writes into it and does not create it
    except OSError:
        cache_dir = None                         # pycuda's own per-user cache
    try:
        with open(KERNEL_FILE) as source:
            kernel = source.read()
        module = SourceModule(kernel, nvcc=nvcc, no_extern_c=True, cache_dir=cache_dir)
    except Exception as exc:  # pycuda.driver.CompileError and what nvcc's absence raises
        raise KernelUnavailable("the preprocessing kernel does not compile: {}: {}".format(
            type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else ""))
    return module.get_function(KERNEL_NAME), module


class CudaFrameLoader(FrameLoader):
    """Frames into `destination` (a device buffer of float32 (1, 3, height, width)) on `stream`, in the
    owning session's CUDA `context` (pushed around each load); the session calls free() in its context."""

    def __init__(self, context, kernel, stream, destination, width, height, mean):
        self._context = context
        self._kernel = kernel
        self._stream = stream
        self._destination = destination
        self._width = width
        self._height = height
        self._mean = [np.float32(m) for m in mean]
        self._host = None
        self._device = None
        self._staged = None
        self._frame_size = None

    def load(self, frame, region_width, region_height):
        with self._context:
            self.stage(frame)
            self.send()
            self.run(region_width, region_height)
        return ON_DEVICE

    def stage(self, frame):
        """Copy the frame (8-bit BGR, height x width x 3) into the page-locked staging buffer (host)."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError("the GPU letterbox takes 8-bit BGR frames, not {} {}".format(list(frame.shape),
                                                                                        frame.dtype))
        self._reserve(frame.nbytes)
        self._frame_size = (frame.shape[1], frame.shape[0])
        self._staged = self._host[:frame.nbytes].reshape(frame.shape)
        np.copyto(self._staged, frame, casting="no")

    def send(self):
        """Queue the staged frame's copy to the device on the stream."""
        cuda.memcpy_htod_async(self._device, self._staged, self._stream)

    def run(self, region_width, region_height):
        """Queue the kernel: the sent frame, letterboxed into the engine's input."""
        frame_width, frame_height = self._frame_size
        grid = ((self._width + BLOCK[0] - 1) // BLOCK[0], (self._height + BLOCK[1] - 1) // BLOCK[1], 1)
        self._kernel(self._device, np.int32(frame_width), np.int32(frame_height), self._destination,
                     np.int32(self._width), np.int32(self._height), np.int32(region_width), np.int32(region_height),
                     np.float32(frame_width / region_width), np.float32(frame_height / region_height),
                     *self._mean, block=BLOCK, grid=grid, stream=self._stream)

    def _reserve(self, nbytes):
        """Staging buffers as large as the largest frame so far (a camera's size rarely changes)."""
        if self._host is not None and self._host.nbytes >= nbytes:
            return
        self.free()
        self._host = cuda.pagelocked_empty(nbytes, np.uint8)
        self._device = cuda.mem_alloc(nbytes)

    def free(self):
        if self._device is not None:
            self._device.free()
        self._device = None
        self._host = None
        self._staged = None
