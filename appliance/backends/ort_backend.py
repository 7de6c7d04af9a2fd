"""ONNX Runtime on the CPU: the backend of any Linux host, and the reference for the others."""
import platform as host

import onnxruntime

from appliance.backends.base import Backend, Capabilities, InferenceSession, Int8Source
from appliance.backends.platform_facts import cpu_description, l4t_release

# Integer dot-product instructions: part of the engine key (ONNX Runtime's optimised model depends on them).
INT8_ISA_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")


# ONNX Runtime's intra-op threads spin while waiting for work by default. On a 2-core host that spinning
# takes the core the camera thread decodes on: bench/run.py measures both ways (docs/performance.md).
ALLOW_SPINNING = False


def session_options(threads, optimized_model_path=None, allow_spinning=ALLOW_SPINNING):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if optimized_model_path:
        options.optimized_model_filepath = optimized_model_path
    return options


class OrtSession(InferenceSession):
    def __init__(self, model, threads=0, allow_spinning=ALLOW_SPINNING):
        """model: a path, or the bytes of an ONNX model."""
        self._session = onnxruntime.InferenceSession(
            model, sess_options=session_options(threads, allow_spinning=allow_spinning),
            providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = tuple(output.name for output in self._session.get_outputs())

    def infer(self, tensor):
        values = self._session.run(list(self.output_names), {self.input_name: tensor})
        return dict(zip(self.output_names, values))

    def close(self):
        self._session = None


class OrtBackend(Backend):
    name = "onnxruntime"
    # INT8 (the Q/DQ model) is slower than FP32 on some CPUs (0.45-0.89x measured on AVX2 and on VNNI
    # EPYCs): `auto` builds both, times them on this CPU and keeps the faster.
    measure_candidates = True

    def version(self):
        return onnxruntime.__version__

    def platform(self):
        name, flags = cpu_description()
        isa = [flag for flag in INT8_ISA_FLAGS if flag in flags]
        return {"backend": self.name, "backend_version": self.version(), "device": name,
                "compute_capability": "+".join([host.machine()] + isa), "l4t_release": l4t_release()}

    def capabilities(self, model):
        return Capabilities(
            fast_int8=True, fast_fp16=False,   # whether INT8 is faster here is measured (measure_candidates)
            int8_unavailable=None if model.qdq_path else
            "no INT8 Q/DQ model is listed in the manifest (facewatch calibrate makes one)",
            fp16_unavailable="ONNX Runtime's CPU provider has no fast FP16")

    def int8_source(self, model):
        """The Q/DQ model: ONNX Runtime runs its QuantizeLinear/DequantizeLinear pairs as INT8."""
        return Int8Source(model.qdq_path, model.qdq_sha256, table=False)

    def builder_settings(self, workspace_mb):
        return {"graph_optimization": "all"}

    def build_engine(self, job, progress):
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

    def open_engine(self, path, threads=0, input_shape=None):
        """Any input shape: the model's height and width are dynamic."""
        return OrtSession(path, threads)
