"""Fake TensorRT: the Python API of one version, chosen by FAKE_TENSORRT_VERSION (tests/fakes/README.md).

SURFACE lists, per class, when each name appears, disappears and starts warning in Python, as read from
../shared/reference/tensorrt-api-by-version.md. Names outside their span are deleted from the class.
"""
import enum
import json
import os
import warnings

import numpy as np

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "8.2.1")
_V = tuple(int(p) for p in __version__.split(".")[:2])
DEPRECATED_CALLS = []
ALWAYS, NEVER = (0, 0), (99, 0)


def _present(since, removed):
    return since <= _V < removed


# ---- enums ----------------------------------------------------------------------------------------------

def _enum(name, members):
    return enum.IntEnum(name, [(m, i) for i, m in enumerate(members)])


_FLAGS_82 = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
             "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
             "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS"]
_FLAGS_86 = _FLAGS_82 + ["ENABLE_TACTIC_HEURISTIC", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8"]
_FLAGS_100 = [f for f in _FLAGS_86 if f not in ("STRICT_TYPES", "ENABLE_TACTIC_HEURISTIC")] + [
    "BF16", "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN",
    "REFIT_IDENTICAL", "WEIGHT_STREAMING"]
_FLAGS_103 = _FLAGS_100 + ["INT4", "REFIT_INDIVIDUAL"]
_FLAGS_11 = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE", "TF32",
             "SPARSE_WEIGHTS", "SAFETY_SCOPE", "DIRECT_IO", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME",
             "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL",
             "WEIGHT_STREAMING", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "DISTRIBUTIVE_INDEPENDENCE"]
BuilderFlag = _enum("BuilderFlag", _FLAGS_11 if _V >= (11, 0) else _FLAGS_103 if _V >= (10, 3) else
                    _FLAGS_100 if _V >= (10, 0) else _FLAGS_86 if _V >= (8, 6) else _FLAGS_82)
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag",
                                      ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"] if _V >= (11, 0) else
                                      ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if _V >= (10, 0) else
                                      ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"])
DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"] + (["UINT8"] if _V >= (8, 5) else []) +
                 (["FP8"] if _V >= (8, 6) else []) + (["BF16", "INT64"] if _V >= (10, 0) else []))
float32, float16, int8, int32 = DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32
if _V >= (8, 4):
    MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM"])
if _V >= (8, 5):
    TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])


class Logger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity=Severity.WARNING):
        self.min_severity = min_severity


if _V >= (10, 0):
    class IProgressMonitor:
        def __init__(self):
            pass


# ---- network and parser --------------------------------------------------------------------------------

class ITensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape
        self.__dict__["_dynamic_range"] = None

    def set_dynamic_range(self, min, max):
        self.__dict__["_dynamic_range"] = (min, max)
        return True


class ILayer:
    def __init__(self, outputs):
        self._outputs = outputs
        self.num_outputs = len(outputs)

    def get_output(self, index):
        return self._outputs[index]


class INetworkDefinition:
    def __init__(self, flags):
        self.flags = flags
        self._inputs, self._layers, self.model = [], [], None

    num_inputs = property(lambda self: len(self._inputs))
    num_layers = property(lambda self: len(self._layers))

    def get_input(self, index):
        return self._inputs[index]

    def get_layer(self, index):
        return self._layers[index]

    def explicit_batch(self):
        return "EXPLICIT_BATCH" in NetworkDefinitionCreationFlag.__members__ and \
            bool(self.flags & (1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH)) or _V >= (10, 0)


class ParserError:
    def __init__(self, text):
        self._text = text

    def desc(self):
        return self._text


class OnnxParser:
    def __init__(self, network, logger):
        self._network, self._errors = network, []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index):
        return self._errors[index]

    def clear_errors(self):
        self._errors = []

    def parse(self, model, path=None):
        import onnx
        if not self._network.explicit_batch():
            self._errors.append(ParserError("This version of the ONNX parser only supports TensorRT "
                                            "INetworkDefinitions with an explicit batch dimension."))
            return False
        try:
            graph = onnx.load_from_string(bytes(model)).graph
        except Exception as exc:
            self._errors.append(ParserError(str(exc)))
            return False
        constants = {i.name for i in graph.initializer}
        self._network._inputs = [ITensor(i.name, [d.dim_value or -1 for d in i.type.tensor_type.shape.dim])
                                 for i in graph.input if i.name not in constants]
        self._network._layers = [ILayer([ITensor(o, None) for o in node.output]) for node in graph.node]
        self._network.model = bytes(model)
        return True

    def parse_from_file(self, path):
        with open(path, "rb") as f:
            return self.parse(f.read(), path)


# ---- builder -------------------------------------------------------------------------------------------

class IOptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, data):
        self.data = bytes(data) or json.dumps({"device": list(_device()[1]), "entries": 0}).encode()

    def serialize(self):
        document = json.loads(self.data.decode())
        document["entries"] += 1
        return json.dumps(document).encode()


class IBuilderConfig:
    def __init__(self):
        self._flags, self._pools, self.profiles, self._timing_cache = set(), {}, [], None
        self.__dict__.update(_int8_calibrator=None, _progress_monitor=None, _builder_optimization_level=3)

    @property
    def max_workspace_size(self):
        return self._pools.get("workspace", 0)

    @max_workspace_size.setter
    def max_workspace_size(self, size):
        self._pools["workspace"] = size

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools["workspace" if pool == MemoryPoolType.WORKSPACE else str(pool)] = pool_size

    def get_memory_pool_limit(self, pool):
        return self._pools.get("workspace" if pool == MemoryPoolType.WORKSPACE else str(pool), 0)

    def set_flag(self, flag):
        self._flags.add(BuilderFlag(flag))

    def clear_flag(self, flag):
        self._flags.discard(flag)

    def get_flag(self, flag):
        return flag in self._flags

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache, ignore_mismatch):
        if json.loads(cache.data.decode())["device"] != list(_device()[1]) and not ignore_mismatch:
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache


def _device():
    """(name, compute capability): the fake GPU, or the real one when real pycuda is imported."""
    from pycuda import driver
    if hasattr(driver, "GPUS"):
        return driver.GPUS[os.environ.get("FAKE_GPU", "nano")]
    driver.init()
    device = driver.Device(0)
    return device.name(), device.compute_capability()


class Builder:
    def __init__(self, logger):
        self.logger = logger
        capability = _device()[1]
        self.__dict__.update(_platform_has_fast_fp16=capability >= (5, 3), _max_batch_size=1,
                             _platform_has_fast_int8=capability >= (6, 1) and capability != (6, 2))

    def create_network(self, flags=0):
        if flags >> len(NetworkDefinitionCreationFlag):
            raise ValueError("unknown network creation flag bits {}".format(flags))
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        dynamic = [t.name for t in network._inputs if -1 in t.shape]
        if any(name not in p.shapes for p in config.profiles or [IOptimizationProfile()] for name in dynamic):
            return None  # "Network has dynamic or shape inputs, but no optimization profile has been defined."
        ranges = sum(1 for layer in network._layers for t in layer._outputs if t.__dict__["_dynamic_range"])
        if "INT8" in BuilderFlag.__members__ and BuilderFlag.INT8 in config._flags and not ranges \
                and config.__dict__["_int8_calibrator"] is None:
            return None
        monitor = config.__dict__["_progress_monitor"]
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            for step in range(2):
                monitor.step_complete("Building engine", step)
            monitor.phase_finish("Building engine")
        header = {"version": __version__, "device": list(_device()[1]), "ranges": ranges,
                  "flags": sorted(f.name for f in config._flags), "workspace": config._pools.get("workspace", 0),
                  "profiles": [{name: [list(s) for s in shapes] for name, shapes in p.shapes.items()}
                               for p in config.profiles]}
        return json.dumps(header).encode() + b"\n" + network.model

    def build_engine(self, network, config):
        raise AssertionError("facewatch must not call the deprecated build_engine")


# ---- runtime -------------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        header, _, model = data.partition(b"\n")
        try:
            header = json.loads(header.decode())
        except ValueError:
            return None  # "Serialization assertion ... Version tag does not match"
        if header["version"] != __version__ or header["device"] != list(_device()[1]):
            return None  # "The engine plan file is not compatible with this version of TensorRT"
        return ICudaEngine(model, header)


class ICudaEngine:
    def __init__(self, model, header):
        import onnxruntime
        self.header = header
        self._session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._session.get_inputs()] + [o.name for o in self._session.get_outputs()]
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.__dict__["_device_memory_size"] = 1 << 20

    num_io_tensors = property(lambda self: len(self._names))
    num_bindings = property(lambda self: len(self._names))

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name in self._inputs else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return [-1, 3, -1, -1] if name in self._inputs else [-1, -1, -1]

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_binding_name(self, index):
        return self._names[index]

    def get_binding_index(self, name):
        return self._names.index(name)

    def binding_is_input(self, index):
        return self._names[index] in self._inputs

    def get_binding_shape(self, index):
        return self.get_tensor_shape(self._names[index])

    def get_binding_dtype(self, index):
        return DataType.FLOAT

    def create_execution_context(self):
        return IExecutionContext(self)

    def serialize(self):
        raise AssertionError("facewatch keeps the serialized bytes; it need not re-serialize")


class IExecutionContext:
    def __init__(self, engine):
        self._engine, self._shapes, self._addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        return self._set_shape(name, shape)

    def _set_shape(self, name, shape):
        """False for a shape outside the engine's optimisation profile, as TensorRT ("... is out of the
        optimization profile's range")."""
        if name not in self._engine._inputs:
            return False
        profiles = self._engine.header.get("profiles") or []
        low, _, high = profiles[0][name] if profiles and name in profiles[0] else (shape, shape, shape)
        if not all(a <= v <= b for a, v, b in zip(low, shape, high)):
            return False
        self._shapes[name] = tuple(shape)
        outputs = self._engine._session.run(None, {name: np.zeros(shape, np.float32)})
        for output, value in zip(self._engine._names[len(self._engine._inputs):], outputs):
            self._shapes[output] = value.shape
        return True

    def get_tensor_shape(self, name):
        return self._shape(name)

    def _shape(self, name):
        return self._shapes.get(name, (-1, 3, -1, -1) if name in self._engine._inputs else (-1, -1, -1))

    def set_binding_shape(self, index, shape):
        return self._set_shape(self._engine._names[index], shape)

    def get_binding_shape(self, index):
        return self._shape(self._engine._names[index])

    def set_tensor_address(self, name, memory):
        self._addresses[name] = int(memory)
        return True

    def _run(self, addresses):
        from pycuda import driver
        if driver.Context.get_current() is None:
            raise RuntimeError("no current CUDA context")
        inputs = {}
        for name in self._engine._inputs:
            array = np.empty(self._shapes[name], np.float32)
            driver.memcpy_dtoh(array, addresses[name])
            inputs[name] = array
        outputs = self._engine._session.run(None, inputs)
        for name, value in zip(self._engine._names[len(inputs):], outputs):
            driver.memcpy_htod(addresses[name], np.ascontiguousarray(value, np.float32))
        return True

    def execute_v2(self, bindings):
        return self._run(dict(zip(self._engine._names, bindings)))

    def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
        return self._run(dict(zip(self._engine._names, bindings)))

    def execute_async_v3(self, stream_handle):
        return self._run(self._addresses)


# ---- the per-version surface ---------------------------------------------------------------------------
# name: (first version with it, first version without it, first version whose Python binding warns)

SURFACE = {
    Builder: {"platform_has_fast_fp16": (ALWAYS, (11, 0), NEVER), "platform_has_fast_int8": (ALWAYS, (11, 0), NEVER),
              "build_engine": (ALWAYS, (10, 0), ALWAYS), "max_batch_size": (ALWAYS, (10, 0), (8, 4))},
    IBuilderConfig: {"max_workspace_size": (ALWAYS, (10, 0), (8, 4)),
                     "set_memory_pool_limit": ((8, 4), NEVER, NEVER), "get_memory_pool_limit": ((8, 4), NEVER, NEVER),
                     "int8_calibrator": (ALWAYS, (11, 0), (10, 1)), "progress_monitor": ((10, 0), NEVER, NEVER),
                     "builder_optimization_level": ((8, 6), NEVER, NEVER)},
    ITensor: {"set_dynamic_range": (ALWAYS, (11, 0), (10, 1)), "dynamic_range": (ALWAYS, (11, 0), (10, 1))},
    ICudaEngine: {"num_bindings": (ALWAYS, (10, 0), NEVER),
                  "get_binding_name": (ALWAYS, (10, 0), (8, 5)), "get_binding_index": (ALWAYS, (10, 0), (8, 5)),
                  "binding_is_input": (ALWAYS, (10, 0), (8, 5)), "get_binding_shape": (ALWAYS, (10, 0), (8, 5)),
                  "get_binding_dtype": (ALWAYS, (10, 0), (8, 5)),
                  "num_io_tensors": ((8, 5), NEVER, NEVER), "get_tensor_name": ((8, 5), NEVER, NEVER),
                  "get_tensor_mode": ((8, 5), NEVER, NEVER), "get_tensor_shape": ((8, 5), NEVER, NEVER),
                  "get_tensor_dtype": ((8, 5), NEVER, NEVER), "device_memory_size": (ALWAYS, (11, 0), NEVER)},
    IExecutionContext: {"execute_async_v2": (ALWAYS, (10, 0), NEVER), "execute_async_v3": ((8, 5), NEVER, NEVER),
                        "set_binding_shape": (ALWAYS, (10, 0), (8, 5)), "get_binding_shape": (ALWAYS, (10, 0), (8, 5)),
                        "set_input_shape": ((8, 5), NEVER, NEVER), "get_tensor_shape": ((8, 5), NEVER, NEVER),
                        "set_tensor_address": ((8, 5), NEVER, NEVER)},
}


def _deprecated(cls, name, member):
    message = "{}.{} is deprecated in TensorRT {}".format(cls.__name__, name, __version__)

    def note():
        DEPRECATED_CALLS.append("{}.{}".format(cls.__name__, name))
        warnings.warn(message, DeprecationWarning, stacklevel=3)

    if isinstance(member, property):
        def getter(self):
            note()
            return member.fget(self)

        def setter(self, value):
            note()
            member.fset(self, value)
        return property(getter, setter if member.fset else None)
    if callable(member):
        def wrapper(*args, **kwargs):
            note()
            return member(*args, **kwargs)
        return wrapper
    return member


class _InstanceAttribute:
    """An attribute set in __init__ that this version lacks or deprecates."""

    def __init__(self, name, present, warn):
        self.name, self.present, self.warn = name, present, warn

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        if not self.present:
            raise AttributeError("'{}' object has no attribute '{}'".format(type(obj).__name__, self.name))
        if self.warn:
            DEPRECATED_CALLS.append("{}.{}".format(type(obj).__name__, self.name))
            warnings.warn("{} is deprecated".format(self.name), DeprecationWarning, stacklevel=2)
        return obj.__dict__["_" + self.name]

    def __set__(self, obj, value):
        if not self.present:
            raise AttributeError("'{}' object has no attribute '{}'".format(type(obj).__name__, self.name))
        if self.warn and obj.__dict__.get("_ready_" + self.name):
            DEPRECATED_CALLS.append("{}.{}".format(type(obj).__name__, self.name))
            warnings.warn("{} is deprecated".format(self.name), DeprecationWarning, stacklevel=2)
        obj.__dict__["_" + self.name] = value
        obj.__dict__["_ready_" + self.name] = True


for _cls, _names in SURFACE.items():
    for _name, (_since, _removed, _warns) in _names.items():
        _present_here = _present(_since, _removed)
        _warn_here = _present_here and _V >= _warns
        _member = _cls.__dict__.get(_name)
        if _member is None:
            setattr(_cls, _name, _InstanceAttribute(_name, _present_here, _warn_here))
        elif not _present_here:
            delattr(_cls, _name)
        elif _warn_here:
            setattr(_cls, _name, _deprecated(_cls, _name, _member))
