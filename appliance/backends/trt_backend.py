"""TensorRT 8.2 to 11.x, the backend of a Jetson: the only modules that import `tensorrt` are this one,
trt_common, trt_build and trt_runtime.

APIs are chosen by hasattr, never by version number. INT8 comes from our calibration table through
set_dynamic_range (8.x-10.x, no calibrator callbacks) or from the Q/DQ ONNX (11.x, where BuilderFlag.INT8
and FP16 are gone).
"""
import hashlib

import tensorrt as trt

from appliance.backends.base import Backend, Capabilities, Int8Source
from appliance.backends.trt_common import implicit_quantization, make_logger, require
from appliance.backends.platform_facts import l4t_release


def gpu_facts():
    from appliance.backends.cuda_buffers import CudaContext
    context = CudaContext()
    try:
        major, minor = context.compute_capability()
        return context.name(), (major, minor)
    finally:
        context.release()


def fast_precisions():
    builder = require(trt.Builder(make_logger()), "Builder")
    if hasattr(builder, "platform_has_fast_int8"):
        return builder.platform_has_fast_int8, builder.platform_has_fast_fp16
    _, capability = gpu_facts()  # 11.x: "query data type support from CUDA directly"
    return capability >= (6, 1) and capability != (6, 2), capability >= (5, 3)


def table_for_version(tables, version):
    """The table made for this TensorRT's major.minor, else the first (the format is the same)."""
    release = tuple(version.split(".")[:2])
    for table in tables:
        if tuple(table.trt_version.split(".")[:2]) == release:
            return table
    return tables[0] if tables else None


class TrtBackend(Backend):
    name = "tensorrt"
    max_workers = 1
    workers_limit_reason = "TensorRT serves from one thread (one CUDA context, one execution context)"

    def version(self):
        return trt.__version__

    def platform(self):
        name, (major, minor) = gpu_facts()
        return {"backend": self.name, "backend_version": self.version(), "device": name,
                "compute_capability": "{}.{}".format(major, minor), "l4t_release": l4t_release()}

    def capabilities(self, model):
        fast_int8, fast_fp16 = fast_precisions()
        if implicit_quantization():
            int8_missing = None if model.calibration else "no INT8 calibration table is listed in the manifest"
            fp16_missing = None
        else:
            int8_missing = None if model.qdq_path else \
                "TensorRT {} builds INT8 only from a Q/DQ model and none is listed in the manifest".format(
                    trt.__version__)
            fp16_missing = "TensorRT {} has no FP16 builder flag (strongly typed) and facewatch ships no FP16 " \
                           "ONNX".format(trt.__version__)
        return Capabilities(fast_int8, fast_fp16, int8_missing, fp16_missing)

    def int8_source(self, model):
        """The table for this TensorRT (with the equalized FP32 graph it describes) up to 10.x; the Q/DQ model
        on 11.x."""
        if not implicit_quantization():
            return Int8Source(model.qdq_path, model.qdq_sha256, table=False)
        table = table_for_version(model.calibration, trt.__version__)
        if table is None:
            return Int8Source(None, None, table=True)
        combined = hashlib.sha256((table.sha256 + (model.int8_onnx_sha256 or "")).encode("ascii")).hexdigest()
        return Int8Source(table.path, combined, table=True)

    def builder_settings(self, workspace_mb):
        return {"workspace_mb": workspace_mb}

    def build_engine(self, job, progress):
        from appliance.backends.trt_build import build_engine
        build_engine(job, progress)

    def open_engine(self, path, threads=0, input_shape=None):
        from appliance.backends.trt_runtime import TrtSession
        return TrtSession(path, input_shape)
