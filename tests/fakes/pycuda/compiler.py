"""Fake pycuda.compiler: SourceModule as pycuda 2022.1 declares it (source, nvcc, options, keep, no_extern_c,
arch, code, cache_dir, include_dirs); get_function() returns a callable taking the kernel's arguments and
block=, grid=, stream= as pycuda's Function does.

There is no CUDA compiler here, so the one kernel facewatch ships (appliance/backends/cuda_preprocess.py)
is run by a NumPy transcription of its arithmetic, reading and writing the fake device memory. That
tests the plumbing (staging buffers, which buffer the engine reads, the letterbox geometry); the kernel
itself is compiled and checked against the CPU path on a real GPU by scripts/gpu_check.py.
"""
import os

import numpy as np

from pycuda import driver

COMPILED = []   # (source, cache_dir) of every module built, for tests


class SourceModule:
    def __init__(self, source, nvcc="nvcc", options=None, keep=False, no_extern_c=False, arch=None, code=None,
                 cache_dir=None, include_dirs=()):
        driver._require_context()
        if "letterbox_bgr_minus_mean" not in source:
            raise driver.CompileError("the fake compiles only facewatch's letterbox kernel")
        if cache_dir and not os.path.isdir(cache_dir):
            # pycuda.compiler.compile_plain writes the cubin into cache_dir without creating it
            raise FileNotFoundError(2, "No such file or directory", os.path.join(cache_dir, "x.cubin"))
        COMPILED.append((source, cache_dir))

    def get_function(self, name):
        if name != "letterbox_bgr_minus_mean":
            raise driver.LogicError("cuModuleGetFunction failed: named symbol not found")
        return letterbox_bgr_minus_mean


def letterbox_bgr_minus_mean(frame, frame_width, frame_height, tensor, width, height, region_width,
                             region_height, scale_x, scale_y, mean_b, mean_g, mean_r, block=None, grid=None,
                             stream=None, shared=0):
    driver._require_context()
    frame_width, frame_height, width, height = int(frame_width), int(frame_height), int(width), int(height)
    source = np.frombuffer(bytes(driver._memory[int(frame)][:frame_width * frame_height * 3]), np.uint8)
    source = source.reshape(frame_height, frame_width, 3).astype(np.float32)
    xs = np.arange(int(region_width), dtype=np.float32)
    ys = np.arange(int(region_height), dtype=np.float32)
    x0, fx = _sample(xs, np.float32(scale_x), frame_width)
    y0, fy = _sample(ys, np.float32(scale_y), frame_height)
    x1, y1 = np.minimum(x0 + 1, frame_width - 1), np.minimum(y0 + 1, frame_height - 1)
    top = source[y0][:, x0] + (source[y0][:, x1] - source[y0][:, x0]) * fx[None, :, None]
    bottom = source[y1][:, x0] + (source[y1][:, x1] - source[y1][:, x0]) * fx[None, :, None]
    region = np.rint(top + (bottom - top) * fy[:, None, None]) - np.array([mean_b, mean_g, mean_r], np.float32)
    out = np.zeros((3, height, width), np.float32)
    out[:, :int(region_height), :int(region_width)] = region.transpose(2, 0, 1)
    driver.memcpy_htod(tensor, out)


def _sample(positions, scale, size):
    at = (positions + np.float32(0.5)) * scale - np.float32(0.5)
    first = np.floor(at).astype(np.int64)
    fraction = (at - first).astype(np.float32)
    fraction[first < 0] = 0
    first[first < 0] = 0
    high = first >= size - 1
    first[high], fraction[high] = size - 1, 0
    return first, fraction
