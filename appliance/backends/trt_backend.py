"""TensorRT 8.2 to 11.x: the only module that imports `tensorrt`.

APIs are chosen by hasattr, never by version number: binding API (8.2/8.4) or tensor API +
execute_async_v3 (8.5+); max_workspace_size (8.2) or set_memory_pool_limit (8.4+); INT8 from our
calibration table via set_dynamic_range (8.x-10.x, no calibrator callbacks) or from the Q/DQ ONNX
(11.x, where BuilderFlag.INT8/FP16 are gone). Every None from TensorRT is raised as an error.
"""
import hashlib
import logging
import os

import numpy as np
import tensorrt as trt

from appliance.backends.base import InferenceSession

log = logging.getLogger(__name__)

NUMPY_DTYPES = (("FLOAT", np.float32), ("HALF", np.float16), ("INT8", np.int8), ("INT32", np.int32),
                ("BOOL", np.bool_), ("UINT8", np.uint8), ("INT64", np.int64))


MAX_TIMING_CACHE_BYTES = 256 << 20


class TensorRTError(RuntimeError):
    pass


def require(value, what):
    if value is None:
        raise TensorRTError("TensorRT returned nothing from {} (see its log above)".format(what))
    return value


def make_logger():
    return trt.Logger(trt.Logger.WARNING)


def numpy_dtype(trt_dtype):
    """Our own map: trt.nptype of TensorRT 8.2/8.4 breaks on NumPy >= 1.24."""
    for name, dtype in NUMPY_DTYPES:
        if getattr(trt.DataType, name, None) == trt_dtype:
            return dtype
    raise TensorRTError("no NumPy type for TensorRT {}".format(trt_dtype))


# --- platform -------------------------------------------------------------------------------------

def gpu_facts():
    from appliance.backends.cuda_buffers import CudaContext
    context = CudaContext()
    try:
        major, minor = context.compute_capability()
        return context.name(), (major, minor)
    finally:
        context.release()


def platform():
    from appliance.engine.key import l4t_release
    name, (major, minor) = gpu_facts()
    return {"backend": "tensorrt", "backend_version": trt.__version__, "device": name,
            "compute_capability": "{}.{}".format(major, minor), "l4t_release": l4t_release()}


def implicit_quantization():
    """TensorRT <= 10: precision by builder flags; 11.x is always strongly typed."""
    return hasattr(trt.BuilderFlag, "INT8")


def fast_precisions():
    builder = require(trt.Builder(make_logger()), "Builder")
    if hasattr(builder, "platform_has_fast_int8"):
        return builder.platform_has_fast_int8, builder.platform_has_fast_fp16
    _, capability = gpu_facts()  # 11.x: "query data type support from CUDA directly"
    return capability >= (6, 1) and capability != (6, 2), capability >= (5, 3)


def capabilities(model):
    from appliance.engine.policy import Capabilities
    fast_int8, fast_fp16 = fast_precisions()
    if implicit_quantization():
        int8_missing = None if model.calibration else "no INT8 calibration table is listed in the manifest"
        fp16_missing = None
    else:
        int8_missing = None if model.qdq_path else \
            "TensorRT {} builds INT8 only from a Q/DQ model and none is listed in the manifest".format(trt.__version__)
        fp16_missing = "TensorRT {} has no FP16 builder flag (strongly typed) and facewatch ships no FP16 ONNX".format(
            trt.__version__)
    return Capabilities(fast_int8, fast_fp16, int8_missing, fp16_missing)


def int8_source(model):
    """(path, sha256) of what an INT8 build reads: the table for this TensorRT (with the equalized FP32
    graph it describes) up to 10.x, the Q/DQ model on 11.x."""
    if not implicit_quantization():
        return model.qdq_path, model.qdq_sha256
    table = table_for_version(model.calibration, trt.__version__)
    if table is None:
        return None, None
    combined = hashlib.sha256((table.sha256 + (model.int8_onnx_sha256 or "")).encode("ascii")).hexdigest()
    return table.path, combined


def table_for_version(tables, version):
    """The table made for this TensorRT's major.minor, else the first (the format is the same)."""
    release = tuple(version.split(".")[:2])
    for table in tables:
        if tuple(table.trt_version.split(".")[:2]) == release:
            return table
    return tables[0] if tables else None


def builder_settings(manager):
    return {"workspace_mb": manager.workspace_mb}


# --- build: a chain of small steps --------------------------------------------------------------------

def build_engine(job, progress):
    logger = make_logger()
    builder = require(trt.Builder(logger), "Builder")
    network = create_network(builder)
    progress("parse", 0.05)
    parser = parse_onnx(network, logger, network_source(job))
    config = require(builder.create_builder_config(), "create_builder_config")
    set_workspace(config, job["workspace_mb"] << 20)
    add_fixed_profile(builder, config, job["input_name"], job["input_shape"])
    set_precision(config, network, job)
    timing_cache = load_timing_cache(config, job["timing_cache"])
    attach_progress_monitor(config, progress)
    progress("build", 0.1)
    serialized = require(builder.build_serialized_network(network, config), "build_serialized_network")
    save_timing_cache(config, job["timing_cache"], timing_cache)
    progress("write", 0.95)
    with open(job["output"], "wb") as f:
        f.write(memoryview(serialized))
    del parser


def network_source(job):
    """The ONNX to parse: the Q/DQ model for INT8 on 11.x, the equalized FP32 graph the table describes
    for INT8 up to 10.x, else the shipped FP32 model."""
    if job["precision"] != "int8":
        return job["onnx"]
    if not implicit_quantization():
        return job["int8_source"]
    return job.get("int8_onnx") or job["onnx"]


def create_network(builder):
    """Explicit batch where the flag exists (required by the 8.x ONNX parser; ignored by 10.x; gone in 11)."""
    flags = 0
    names = trt.NetworkDefinitionCreationFlag
    if hasattr(names, "EXPLICIT_BATCH"):
        flags |= 1 << int(names.EXPLICIT_BATCH)
    return require(builder.create_network(flags), "create_network")


def parse_onnx(network, logger, path):
    parser = require(trt.OnnxParser(network, logger), "OnnxParser")
    with open(path, "rb") as f:
        ok = parser.parse(f.read(), path)
    if not ok:
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise TensorRTError("the ONNX parser rejected {}: {}".format(path, "; ".join(errors) or "no detail"))
    return parser


def set_workspace(config, size):
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:
        config.max_workspace_size = size


def add_fixed_profile(builder, config, input_name, shape):
    profile = require(builder.create_optimization_profile(), "create_optimization_profile")
    profile.set_shape(input_name, shape, shape, shape)
    config.add_optimization_profile(profile)


def set_precision(config, network, job):
    precision = job["precision"]
    if precision == "fp32" or not implicit_quantization():
        if precision == "fp16":
            raise TensorRTError("TensorRT {} cannot build FP16 from an FP32 ONNX".format(trt.__version__))
        return
    if precision in ("fp16", "int8") and job.get("fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        apply_dynamic_ranges(network, read_calibration_table(job["int8_source"]))


def read_calibration_table(path):
    """{tensor name: amax} from a TensorRT calibration cache."""
    from appliance.calibration.cache_format import CalibrationTableError, read_table
    try:
        return read_table(path).amax
    except CalibrationTableError as exc:
        raise TensorRTError(str(exc))


def network_tensors(network):
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        tensors.extend(layer.get_output(j) for j in range(layer.num_outputs))
    return tensors


def apply_dynamic_ranges(network, ranges):
    tensors = network_tensors(network)
    matched = 0
    for tensor in tensors:
        amax = ranges.get(tensor.name)
        if amax is not None:
            if not tensor.set_dynamic_range(-amax, amax):
                raise TensorRTError("set_dynamic_range refused {}".format(tensor.name))
            matched += 1
    if matched == 0:
        raise TensorRTError("the calibration table names none of the network's {} tensors: it was made for "
                            "another model".format(len(tensors)))
    if matched < len(tensors):
        log.warning("calibration table covers %d of %d tensors; the others run in higher precision",
                    matched, len(tensors))


def load_timing_cache(config, path):
    data = b""
    if path and os.path.isfile(path):
        from appliance.files import FileRefused, read_regular_file
        try:
            data = read_regular_file(path, MAX_TIMING_CACHE_BYTES)
        except FileRefused as exc:
            log.warning("timing cache not used: %s", exc)
    cache = require(config.create_timing_cache(data), "create_timing_cache")
    if not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not fit this device; starting a new one", path)
        cache = require(config.create_timing_cache(b""), "create_timing_cache")
        config.set_timing_cache(cache, False)
    return cache


def save_timing_cache(config, path, cache):
    """Keep the timing cache for the next build; one that cannot be written only costs time then."""
    if not path:
        return
    from appliance.files import atomic_write_bytes
    serialized = require(config.get_timing_cache(), "get_timing_cache").serialize()
    try:
        atomic_write_bytes(path, bytes(memoryview(serialized)))
    except OSError as exc:
        log.warning("timing cache %s not saved: %s", path, exc)


def attach_progress_monitor(config, progress):
    """Real build progress where TensorRT reports it (10.x+); before that the build is one phase."""
    if not hasattr(trt, "IProgressMonitor") or not hasattr(config, "progress_monitor"):
        return

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._steps = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                self._steps[phase_name] = max(1, num_steps)

        def step_complete(self, phase_name, step):
            if phase_name in self._steps:
                progress(phase_name, 0.1 + 0.8 * (step + 1) / self._steps[phase_name])
            return True

        def phase_finish(self, phase_name):
            self._steps.pop(phase_name, None)

    config.progress_monitor = Monitor()


# --- runtime --------------------------------------------------------------------------------------------

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

    def infer(self, tensor):
        with self._cuda:
            self._buffers.upload({self.input_name: tensor})
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
                self._buffers.free()
            self._buffers = None
        self._context = self._engine = self._runtime = None
        if self._cuda is not None:
            self._cuda.release()
            self._cuda = None


def open_engine(path, threads=0, input_shape=None):
    return TrtSession(path, input_shape)
