"""The engine cache key: everything an engine's validity depends on (SPEC: Files on the device)."""
import collections
import hashlib
import json

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"


def l4t_release(path=NV_TEGRA_RELEASE):
    """'R32.7.1' from '# R32 (release), REVISION: 7.1, ...' on a Jetson; '' elsewhere."""
    try:
        with open(path) as f:
            first = f.readline()
    except OSError:
        return ""
    fields = dict(part.strip().split(" ", 1) for part in first.lstrip("# ").split(",") if " " in part.strip())
    release = first.lstrip("# ").split(" ", 1)[0]
    revision = fields.get("REVISION:", "").strip()
    return "{}.{}".format(release, revision) if revision else release


def key_inputs(model, platform, precision, builder_settings, calibration_sha256=""):
    """The ordered inputs of the key. platform: backend, backend_version, device, compute_capability."""
    return collections.OrderedDict([
        ("model", model.name),
        ("onnx_sha256", model.onnx_sha256),
        ("calibration_sha256", calibration_sha256 if precision == "int8" else ""),
        ("backend", platform["backend"]),
        ("backend_version", platform["backend_version"]),
        ("device", platform["device"]),
        ("compute_capability", platform["compute_capability"]),
        ("l4t_release", platform["l4t_release"]),
        ("precision", precision),
        ("input_shape", [1, 3, model.input_height, model.input_width]),
        ("builder", collections.OrderedDict(sorted(builder_settings.items()))),
    ])


def key_digest(inputs):
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()[:24]


def engine_name(inputs):
    """File stem: readable prefix, exact digest: retinaface_mnet025-fp32-onnxruntime-<digest>."""
    return "{}-{}-{}-{}".format(inputs["model"], inputs["precision"], inputs["backend"], key_digest(inputs))
