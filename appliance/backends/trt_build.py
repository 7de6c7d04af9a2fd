"""TensorRT engine builds, as a chain of small steps: explicit-batch network, ONNX parse, workspace, a
fixed optimisation profile at the job's input shape, precision flags and INT8 ranges (8.x-10.x, from the
calibration table the manager read) or the Q/DQ model (11.x), a persisted timing cache, TensorRT's own
progress monitor where it exists (10.x+). Every None from TensorRT is raised as an error."""
import logging
import os

import tensorrt as trt

from appliance.backends.trt_common import TensorRTError, implicit_quantization, make_logger, require

log = logging.getLogger(__name__)

MAX_TIMING_CACHE_BYTES = 256 << 20


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
        apply_dynamic_ranges(network, job["dynamic_ranges"])


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
