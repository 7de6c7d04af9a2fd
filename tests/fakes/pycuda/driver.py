"""Fake pycuda.driver: host memory stands in for device memory; contexts and allocations are tracked."""
import itertools
import os
import threading

import numpy as np

GPUS = {"nano": ("NVIDIA Tegra X1", (5, 3)), "xavier": ("Xavier", (7, 2)), "orin": ("Orin", (8, 7)),
        "thor": ("NVIDIA Thor", (11, 0))}
_memory = {}
_pointers = itertools.count(0x7F0000000000, 0x100000)
_stack = threading.local()
_initialised = []


class LogicError(RuntimeError):
    pass


def init(flags=0):
    _initialised.append(True)


def _require_context():
    if not getattr(_stack, "contexts", None):
        raise LogicError("cuFunc failed: invalid device context")


class Device:
    def __init__(self, index):
        if not _initialised:
            raise LogicError("cuInit has not been called")
        self._name, self._capability = GPUS[os.environ.get("FAKE_GPU", "nano")]

    def name(self):
        return self._name

    def compute_capability(self):
        return self._capability

    def retain_primary_context(self):
        return Context()


class Context:
    detached = 0

    def push(self):
        _stack.contexts = getattr(_stack, "contexts", []) + [self]

    @staticmethod
    def pop():
        _require_context()
        _stack.contexts.pop()

    @staticmethod
    def get_current():
        contexts = getattr(_stack, "contexts", [])
        return contexts[-1] if contexts else None

    def detach(self):
        Context.detached += 1


class DeviceAllocation:
    def __init__(self, nbytes):
        _require_context()
        self._pointer = next(_pointers)
        _memory[self._pointer] = bytearray(nbytes)

    def __int__(self):
        return self._pointer

    __index__ = __int__

    def free(self):
        _require_context()
        _memory.pop(self._pointer, None)


class Stream:
    def __init__(self):
        _require_context()
        self.handle = next(_pointers)

    def synchronize(self):
        pass


def mem_alloc(nbytes):
    return DeviceAllocation(nbytes)


def pagelocked_empty(shape, dtype):
    return np.empty(shape, dtype)


def memcpy_htod(dest, src):
    _require_context()
    data = np.ascontiguousarray(src).tobytes()
    _memory[int(dest)][:len(data)] = data


def memcpy_dtoh(dest, src):
    _require_context()
    buffer = _memory[int(src)]
    dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(buffer[:dest.nbytes]), np.uint8)


def memcpy_htod_async(dest, src, stream=None):
    memcpy_htod(dest, src)


def memcpy_dtoh_async(dest, src, stream=None):
    memcpy_dtoh(dest, src)


def live_allocations():
    return len(_memory)


class CompileError(RuntimeError):
    pass
