#!/usr/bin/env python3
"""What only a real CUDA GPU can show about facewatch's TensorRT runtime path, in one run.

No TensorRT exists on the GPU host, so the TensorRT API is the fake of tests/fakes (its engines run the
ONNX with ONNX Runtime); everything on the CUDA side is real: pycuda's primary context pushed per thread,
page-locked host buffers, device allocations, a stream with async copies, and a CUDA kernel.

    PYTHONPATH=/path/to/real/pycuda:tests/fakes FAKE_TENSORRT_VERSION=8.6.1 python3 scripts/gpu_check.py
"""
import os
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

ROWS = []


def row(check, result, detail=""):
    ROWS.append((check, result, detail))
    print("{:<44} {:<6} {}".format(check, result, detail), flush=True)


def check_buffers_and_kernel(cuda):
    from pycuda.compiler import SourceModule
    from appliance.backends.cuda_buffers import CudaContext, IOBuffers
    context = CudaContext()
    with context:
        kernel = SourceModule("""
        __global__ void scale(const float *in, float *out, float k, int n) {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) out[i] = in[i] * k;
        }""").get_function("scale")
        specs = [("input", (1, 3, 640, 640), np.float32, True), ("output", (1, 3, 640, 640), np.float32, False)]
        data = np.random.RandomState(0).rand(1, 3, 640, 640).astype(np.float32)
        with IOBuffers(specs) as buffers:
            buffers.upload({"input": data})
            n = data.size
            kernel(buffers.device["input"], buffers.device["output"], np.float32(2.0), np.int32(n),
                   block=(256, 1, 1), grid=((n + 255) // 256, 1), stream=buffers.stream)
            result = buffers.download()["output"]
        error = float(np.abs(result - 2 * data).max())
    context.release()
    row("IOBuffers upload -> kernel -> download", "ok" if error == 0 else "FAIL", "max |err| {}".format(error))


def check_trt_session(cuda, model):
    import cv2
    import onnxruntime
    from appliance.backends import trt_backend
    from appliance.detector import Detector
    from appliance.engine import acceptance
    free_before = cuda_free(cuda)
    scratch = tempfile.mkdtemp()
    precision = "fp16" if trt_backend.implicit_quantization() else "fp32"  # 11.x: strongly typed, FP32 ONNX
    job = {"backend": "tensorrt", "onnx": model.onnx_path, "int8_source": None, "precision": precision,
           "output": os.path.join(scratch, "e.engine"), "workspace_mb": 256, "fast_fp16": True,
           "input_name": model.input_name, "input_shape": [1, 3, model.input_height, model.input_width],
           "timing_cache": os.path.join(scratch, "timing.cache")}
    trt_backend.build_engine(job, lambda phase, fraction: None)
    row("build {} (fake TensorRT {})".format(precision, trt_backend.trt.__version__), "ok",
        "{} cc {}".format(*trt_backend.gpu_facts()))
    session = trt_backend.open_engine(job["output"], input_shape=job["input_shape"])
    image = cv2.imread(model.golden["image"])
    detector = Detector(session, model)
    tensor, _ = detector.preprocess(image)
    reference = onnxruntime.InferenceSession(model.onnx_path, providers=["CPUExecutionProvider"]).run(
        None, {model.input_name: tensor})
    outputs = session.infer(tensor)
    error = max(float(np.abs(outputs[name] - value).max()) for name, value in zip(session.output_names, reference))
    row("TrtSession outputs == ONNX Runtime", "ok" if error < 1e-4 else "FAIL", "max |err| {:.2e}".format(error))

    from_thread = {}
    worker = threading.Thread(target=lambda: from_thread.update(session.infer(tensor)))
    worker.start()
    worker.join()
    same = all(np.array_equal(from_thread[name], outputs[name]) for name in session.output_names)
    row("infer from another thread (context push)", "ok" if same else "FAIL")

    verdict = acceptance.check(detector, model.golden)
    row("acceptance check through the GPU buffers", "ok" if verdict.passed else "FAIL", verdict.reason)

    timings = []
    for _ in range(30):
        started = time.perf_counter()
        session.infer(tensor)
        timings.append(time.perf_counter() - started)
    row("infer incl. H2D + D2H (fake engine = ORT CPU)", "info", "median {:.1f} ms".format(1000 * np.median(timings)))
    detector.close()
    leaked = free_before - cuda_free(cuda)
    row("device memory after close", "ok" if leaked < (8 << 20) else "FAIL", "{} MiB not returned".format(leaked >> 20))


def cuda_free(cuda):
    from appliance.backends.cuda_buffers import CudaContext
    context = CudaContext()
    with context:
        free, _ = cuda.mem_get_info()
    context.release()
    return free


def main():
    import pycuda
    import pycuda.driver as cuda
    from appliance.manifest import load_model
    if hasattr(cuda, "GPUS"):
        raise SystemExit("this is the fake pycuda: put the real one first on PYTHONPATH")
    row("pycuda", "info", "{} at {}".format(pycuda.VERSION_TEXT, os.path.dirname(pycuda.__file__)))
    model = load_model()
    check_buffers_and_kernel(cuda)
    check_trt_session(cuda, model)
    failed = [r for r in ROWS if r[1] == "FAIL"]
    print("\n{} checks, {} failed".format(sum(1 for r in ROWS if r[1] != "info"), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
