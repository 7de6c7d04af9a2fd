"""ONNX Runtime on the CPU: the backend of any Linux host, and the reference for the others."""
import onnxruntime

from appliance.backends.base import InferenceSession


def session_options(threads, optimized_model_path=None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    return options


class OrtSession(InferenceSession):
    def __init__(self, model_path, threads=0):
        self._session = onnxruntime.InferenceSession(
            model_path, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = tuple(output.name for output in self._session.get_outputs())

    def infer(self, tensor):
        values = self._session.run(list(self.output_names), {self.input_name: tensor})
        return dict(zip(self.output_names, values))

    def close(self):
        self._session = None


def open_session(model_path, threads=0):
    return OrtSession(model_path, threads)


def version():
    return onnxruntime.__version__


# --- engines: what the engine manager asks of every backend ---------------------------------------

# Integer dot-product instructions. Plain AVX2 is left out: bench/int8_vs_fp32.py measures the INT8
# Q/DQ model at 0.89x the speed of FP32 on an AVX2-only CPU, so INT8 is no gain there.
FAST_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")


def cpu_description(cpuinfo=None):
    """(model name, ISA flags) of this CPU, from /proc/cpuinfo (or the file $FACEWATCH_CPUINFO names)."""
    import os
    import platform as host
    cpuinfo = cpuinfo or os.environ.get("FACEWATCH_CPUINFO") or "/proc/cpuinfo"
    name, flags = "", set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware") and not name:
                    name = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name or host.processor() or host.machine(), flags


def platform():
    import platform as host
    from appliance.engine.key import l4t_release
    name, flags = cpu_description()
    isa = [flag for flag in FAST_INT8_FLAGS if flag in flags]
    return {"backend": "onnxruntime", "backend_version": onnxruntime.__version__, "device": name,
            "compute_capability": "+".join([host.machine()] + isa), "l4t_release": l4t_release()}


def capabilities(model):
    from appliance.engine.policy import Capabilities
    _, flags = cpu_description()
    return Capabilities(
        fast_int8=any(flag in flags for flag in FAST_INT8_FLAGS),
        fast_fp16=False,
        int8_unavailable=None if model.qdq_path else
        "no INT8 Q/DQ model is listed in the manifest (facewatch calibrate makes one)",
        fp16_unavailable="ONNX Runtime's CPU provider has no fast FP16")


def int8_source(model):
    """(path, sha256) of what an INT8 build reads: the Q/DQ model."""
    return model.qdq_path, model.qdq_sha256


def builder_settings(engine_config):
    return {"graph_optimization": "all"}


def build_engine(job, progress):
    """The engine is ONNX Runtime's fully optimised model for this CPU (layouts and fusions chosen here)."""
    if job["precision"] == "fp16":
        raise RuntimeError("ONNX Runtime's CPU provider builds no FP16 engine")
    source = job["int8_source"] if job["precision"] == "int8" else job["onnx"]
    progress("load", 0.1)
    options = session_options(threads=1, optimized_model_path=job["output"])
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    progress("optimize", 0.3)
    onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    progress("write", 0.9)


def open_engine(path, threads=0, input_shape=None):
    return OrtSession(path, threads)
