"""What the engine manager asks of an inference backend, declared once.

A backend builds engines (in a child process) and opens them; it knows its platform and what it can do.
It depends on nothing of the engine manager's (appliance.engine) or of calibration: the manager hands it
everything in the build job. Each backend lives in its own module, imported only when chosen
(appliance.backends.load_backend), so tensorrt and pycuda are never imported on a host that runs ONNX
Runtime.
"""
from typing import NamedTuple, Optional

Capabilities = NamedTuple("Capabilities", [
    ("fast_int8", bool), ("fast_fp16", bool),
    ("int8_unavailable", Optional[str]),   # why INT8 cannot be built here (no table, ...), or None
    ("fp16_unavailable", Optional[str]),
])

Int8Source = NamedTuple("Int8Source", [
    ("path", Optional[str]),     # what an INT8 build reads, or None
    ("sha256", Optional[str]),   # its digest, for the engine key
    ("table", bool),             # True: a calibration table of ranges (the job gets dynamic_ranges)
])


class Backend:
    """The interface; subclasses implement every method."""

    name = ""
    measure_candidates = False   # True: `auto` builds and times FP32 and INT8 and keeps the faster
    max_workers = 0              # how many inference threads may each serve with a session (0: no limit)
    workers_limit_reason = ""    # why, when there is a limit

    def version(self):
        """The backend library's version (a key input)."""
        raise NotImplementedError

    def platform(self):
        """{backend, backend_version, device, compute_capability, l4t_release}: key inputs."""
        raise NotImplementedError

    def capabilities(self, model):
        """Capabilities: which precisions this platform builds, and why not the others."""
        raise NotImplementedError

    def int8_source(self, model):
        """Int8Source: what an INT8 build of `model` reads here."""
        raise NotImplementedError

    def builder_settings(self, workspace_mb):
        """{name: value} of the build settings that change an engine (key inputs)."""
        raise NotImplementedError

    def build_engine(self, job, progress):
        """Build the engine the job describes into job["output"]; progress(phase, fraction). Runs in the
        build child: raising is reporting."""
        raise NotImplementedError

    def open_engine(self, path, threads=0, input_shape=None):
        """An InferenceSession on an engine file (input_shape: [1, 3, height, width])."""
        raise NotImplementedError


class OnDevice:
    """Stands for the input tensor when a FrameLoader has already put it in the session's input buffer."""


ON_DEVICE = OnDevice()


class FrameLoader:
    """Letterboxes a BGR uint8 frame into a session's input on its own device: scaled (bilinear) to
    region_width x region_height at the top-left, minus the mean, planes in B, G, R order, 0 around."""

    def load(self, frame, region_width, region_height):
        """-> ON_DEVICE, to be passed to the session's infer()."""
        raise NotImplementedError


class InferenceSession:
    """A loaded engine. Subclasses implement infer() and release resources in close()."""

    input_name = ""
    output_names = ()
    preprocessing = "cpu"   # where frames become tensors for this session, in words

    def infer(self, tensor):
        """tensor: float32 NCHW, or ON_DEVICE after frame_loader().load() -> {output name: ndarray}."""
        raise NotImplementedError

    def frame_loader(self, width, height, mean):
        """A FrameLoader into this session's input, or None: preprocess on the CPU."""
        return None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
