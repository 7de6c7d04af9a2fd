#!/usr/bin/env python3
"""What only a real CUDA GPU can show about facewatch's TensorRT path, in one run; a table at the end.

No TensorRT exists on the GPU host, so the TensorRT API is the fake of tests/fakes (its engines run the
ONNX with ONNX Runtime on the CPU); everything on the CUDA side is real: pycuda, the primary context pushed
per thread, page-locked buffers, a stream with async copies, and facewatch's preprocessing kernel
(appliance/backends/letterbox.cu) compared with the CPU Preprocessor on the demo clip's real frames and
timed with CUDA events.

    PYTHONPATH=/path/to/real/pycuda:tests/fakes FAKE_TENSORRT_VERSION=8.6.1 python3 scripts/gpu_check.py [--json OUT]
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080))
TIMED_RUNS = 200
ROWS = []


def row(check, result, detail=""):
    ROWS.append({"check": check, "result": result, "detail": detail})
    print("{:<52} {:<6} {}".format(check, result, detail), flush=True)


def median_ms(seconds):
    return 1000.0 * float(np.median(seconds))


def clip_frames():
    import cv2
    capture = cv2.VideoCapture(os.path.join(REPO_ROOT, "examples", "demo", "clip.avi"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def check_buffers(cuda):
    from appliance.backends.cuda_buffers import CudaContext, IOBuffers
    context = CudaContext()
    data = np.random.RandomState(0).rand(1, 3, 480, 640).astype(np.float32)
    with context:
        with IOBuffers([("input", data.shape, np.float32, True), ("output", data.shape, np.float32, False)]) as io:
            io.upload({"input": data})
            cuda.memcpy_dtod_async(io.device["output"], io.device["input"], data.nbytes, io.stream)
            same = np.array_equal(io.download()["output"], data)
    context.release()
    row("IOBuffers: upload, device copy, download", "ok" if same else "FAIL")


def event_ms(cuda, stream, queue):
    """GPU milliseconds of what queue() puts on the stream, by CUDA events."""
    start, end = cuda.Event(), cuda.Event()
    start.record(stream)
    queue()
    end.record(stream)
    end.synchronize()
    return end.time_since(start)


def check_preprocessing(cuda, model, frames, results):
    import cv2
    from appliance.backends.cuda_buffers import CudaContext, IOBuffers
    from appliance.backends.cuda_preprocess import CudaFrameLoader, compile_kernel
    from appliance.models.retinaface import Preprocessor, fit
    from appliance.engine.shapes import network_size
    context = CudaContext()
    cache = tempfile.mkdtemp()
    with context:
        started = time.perf_counter()
        kernel, module = compile_kernel(cache)
        first = time.perf_counter() - started
        started = time.perf_counter()
        compile_kernel(cache)
        again = time.perf_counter() - started
    row("kernel compiled, then found in the cache", "ok" if again < first else "FAIL",
        "{:.0f} ms, then {:.0f} ms".format(1000 * first, 1000 * again))
    for frame_size in FRAME_SIZES:
        width, height = network_size(frame_size[0], frame_size[1], 640, 32)
        sized = [f if (f.shape[1], f.shape[0]) == frame_size else
                 cv2.resize(f, frame_size, interpolation=cv2.INTER_LINEAR) for f in frames]
        _, region_width, region_height = fit(frame_size[0], frame_size[1], width, height)
        cpu = Preprocessor(width, height, model.mean)
        with context:
            io = IOBuffers([("input", (1, 3, height, width), np.float32, True)])
            loader = CudaFrameLoader(context, kernel, io.stream, io.device["input"], width, height, model.mean)
        worst, differing, total = 0.0, 0, 0
        for frame in sized:
            expected, _ = cpu(frame)
            loader.load(frame, region_width, region_height)
            with context:
                got = np.empty_like(expected)
                cuda.memcpy_dtoh(got, io.device["input"])
            difference = np.abs(got - expected)
            worst = max(worst, float(difference.max()))
            differing += int(np.count_nonzero(difference))
            total += difference.size
        label = "{}x{} -> {}x{}".format(frame_size[0], frame_size[1], width, height)
        row("GPU letterbox == CPU Preprocessor, " + label, "ok" if worst <= 1.0 else "FAIL",
            "{} frames, max |diff| {:g}, {:.3%} of values differ".format(len(sized), worst, differing / total))
        timing = time_preprocessing(cuda, context, cpu, loader, io, sized, region_width, region_height)
        row("preprocess " + label, "info", "CPU {cpu_ms:.3f} ms | GPU kernel {kernel_ms:.3f} ms, uint8 H2D "
            "{h2d_uint8_ms:.3f} ms, whole load {gpu_wall_ms:.3f} ms | float32 tensor H2D {h2d_float_ms:.3f} ms"
            .format(**timing))
        results.append(dict(timing, frame=list(frame_size), network=[width, height], max_abs_diff=worst,
                            differing_fraction=differing / total, frames=len(sized)))
        with context:
            loader.free()
            io.free()
    with context:
        del module
    context.release()


def time_preprocessing(cuda, context, cpu, loader, io, frames, region_width, region_height):
    """Medians over TIMED_RUNS: the CPU Preprocessor (wall); on the GPU the kernel and the frame's upload
    (CUDA events), the whole load() synchronised (wall), and the float32 tensor's upload that the CPU path
    needs instead."""
    cpu_s, kernel_ms, h2d_ms, wall_s, float_ms = [], [], [], [], []
    tensor, _ = cpu(frames[0])
    with context:
        host_tensor = cuda.pagelocked_empty(tensor.shape, np.float32)
    for index in range(TIMED_RUNS):
        frame = frames[index % len(frames)]
        started = time.perf_counter()
        cpu(frame)
        cpu_s.append(time.perf_counter() - started)
        with context:
            started = time.perf_counter()
            loader.load(frame, region_width, region_height)
            io.stream.synchronize()
            wall_s.append(time.perf_counter() - started)
            loader.stage(frame)
            h2d_ms.append(event_ms(cuda, io.stream, loader.send))
            kernel_ms.append(event_ms(cuda, io.stream, lambda: loader.run(region_width, region_height)))
            float_ms.append(event_ms(cuda, io.stream, lambda: cuda.memcpy_htod_async(
                io.device["input"], host_tensor, io.stream)))
    with context:
        del host_tensor
    return {"cpu_ms": median_ms(cpu_s), "kernel_ms": float(np.median(kernel_ms)),
            "h2d_uint8_ms": float(np.median(h2d_ms)), "gpu_wall_ms": median_ms(wall_s),
            "h2d_float_ms": float(np.median(float_ms))}


def check_engine_path(cuda, model):
    """The TensorRT session (fake TensorRT, real CUDA) with the kernel feeding it: same faces as the CPU
    path, acceptance passes, another thread can infer, and every device byte comes back."""
    import cv2
    from appliance.engine.detector import Detector
    from appliance.engine.manager import EngineManager
    from appliance.models.retinaface import Preprocessor
    free_before = cuda_free(cuda)
    manager = EngineManager(model, "tensorrt", tempfile.mkdtemp(), size=(640, 480))
    engine = manager.ensure("fp32")
    row("engine built and accepted through the GPU kernel", "ok", "{}: {}".format(
        engine.name, engine.sidecar.get("acceptance", "")))
    golden = cv2.imread(model.golden["image"])
    with manager.open_detector(engine) as on_gpu:
        found = on_gpu.detect(golden)
        with Detector(manager.backend.open_engine(engine.path, input_shape=[1, 3, 480, 640]), model,
                      size=(640, 480)) as on_cpu:
            on_cpu._preprocess = Preprocessor(640, 480, model.mean)
            expected = on_cpu.detect(golden)
        shift = float(np.abs(found.boxes - expected.boxes).max()) if len(found.boxes) == len(expected.boxes) \
            else float("inf")
        row("detections: GPU preprocessing vs CPU", "ok" if on_gpu.preprocessing == "gpu" and shift < 1.0
            else "FAIL", "{} faces, boxes within {:.3f} px ({})".format(len(found.boxes), shift, on_gpu.preprocessing))
        from_thread = []
        worker = threading.Thread(target=lambda: from_thread.append(on_gpu.detect(golden)))
        worker.start()
        worker.join()
        same = bool(from_thread) and np.array_equal(from_thread[0].boxes, found.boxes)
        row("detect from another thread (context push)", "ok" if same else "FAIL")
    leaked = free_before - cuda_free(cuda)
    row("device memory after close", "ok" if leaked < (8 << 20) else "FAIL", "{} MiB not returned".format(
        leaked >> 20))


def cuda_free(cuda):
    from appliance.backends.cuda_buffers import CudaContext
    context = CudaContext()
    with context:
        free, _ = cuda.mem_get_info()
    context.release()
    return free


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows and timings here")
    arguments = parser.parse_args()
    import pycuda
    import pycuda.driver as cuda
    from appliance.manifest import load_model
    if hasattr(cuda, "GPUS"):
        raise SystemExit("this is the fake pycuda: put the real one first on PYTHONPATH")
    cuda.init()
    device = cuda.Device(0)
    row("GPU", "info", "{} (sm_{}{}), pycuda {}".format(device.name(), *device.compute_capability(),
                                                         pycuda.VERSION_TEXT))
    model = load_model()
    frames = clip_frames()
    timings = []
    check_buffers(cuda)
    check_preprocessing(cuda, model, frames, timings)
    check_engine_path(cuda, model)
    failed = [r for r in ROWS if r["result"] == "FAIL"]
    print("\n{} checks, {} failed".format(sum(1 for r in ROWS if r["result"] != "info"), len(failed)))
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump({"rows": ROWS, "preprocessing": timings}, out, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
