"""`facewatch calibrate --images DIR [--out PATH] [--qdq PATH] [--trt-version X.Y.Z]`

Runs the shipped FP32 model over the images with ONNX Runtime, equalizes its channels, picks every
activation's range by entropy calibration, and writes three files:
  PATH              the TensorRT calibration table (cache format)
  PATH.fp32.onnx    the equalized FP32 model the table describes (TensorRT 8.x-10.x INT8 builds parse it)
  PATH.qdq.onnx     the INT8 Q/DQ model (TensorRT 11, ONNX Runtime)
(PATH's extension is replaced, e.g. calibration.cache -> calibration.qdq.onnx.)
"""
import os

from appliance.commands import arguments
from appliance.errors import EXIT_OK

DEFAULT_TABLE = "calibration.cache"
DEFAULT_TRT_VERSION = "8.2.1"


def add_arguments(parser):
    parser.add_argument("--images", required=True, metavar="DIR", type=arguments.path,
                        help="folder of calibration images")
    parser.add_argument("--out", default=DEFAULT_TABLE, metavar="PATH", type=arguments.path,
                        help="the calibration table to write (default: {})".format(DEFAULT_TABLE))
    parser.add_argument("--trt-version", default=DEFAULT_TRT_VERSION, metavar="X.Y.Z", type=arguments.trt_version,
                        help="TensorRT version named in the table's header (default: {}, JetPack 4.6)"
                        .format(DEFAULT_TRT_VERSION))
    parser.add_argument("--threads", type=arguments.THREADS, default=0,
                        help="ONNX Runtime threads, 0..256 (default 0: its own choice)")


def companion_path(table_path, suffix):
    return os.path.splitext(table_path)[0] + suffix


def prepare_outputs(paths):
    """UsageError before any work when an output cannot be written (a folder, a device, no folder)."""
    from appliance.errors import UsageError
    from appliance.files import check_replaceable, os_reason
    folder = os.path.dirname(paths[0])
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError("--out: cannot create {}: {}".format(folder, exc.strerror or exc))
    if not os.access(folder, os.W_OK):
        raise UsageError("--out: the folder {} is not writable".format(folder))
    for path in paths:
        try:
            check_replaceable(path)
        except OSError as exc:
            raise UsageError("--out: {}".format(os_reason(path, exc)))


def check_qdq_model(model, qdq_bytes, threads):
    """The Q/DQ model must find the golden image's faces, as any engine must before serving."""
    from appliance.backends.ort_backend import OrtSession
    from appliance.engine.detector import Detector
    from appliance.engine import acceptance
    from appliance.errors import FacewatchError
    with Detector(OrtSession(qdq_bytes, threads), model) as detector:
        verdict = acceptance.check(detector, model.golden, acceptance.reference_for(model, detector.size))
    if not verdict.passed:
        raise FacewatchError("the INT8 model made from these images fails the acceptance check on the golden "
                             "image ({}): the images do not show enough of what the camera will see (use a few "
                             "hundred photos with faces, as the camera frames them); nothing was written".format(
                                 verdict.reason))
    return verdict


def write_all(outputs):
    """Every (path, bytes) written, or none: a failure removes what this run wrote and says why."""
    from appliance.errors import FacewatchError
    from appliance.files import atomic_write_bytes, os_reason
    written = []
    try:
        for path, data in outputs:
            atomic_write_bytes(path, data)
            written.append(path)
    except OSError as exc:
        for path in written:
            os.unlink(path)
        raise FacewatchError("cannot write {}; nothing was written".format(os_reason(path, exc)))


def require_onnx():
    from appliance.errors import FacewatchError
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FacewatchError("facewatch calibrate needs the onnx package: pip install 'facewatch[calibrate]'")


def run(args):
    require_onnx()
    from appliance.calibration import cache_format, image_set
    from appliance.calibration.qdq import make_qdq_model
    from appliance.calibration.ranges import calibrate
    from appliance.files import file_sha256
    from appliance.manifest import load_model
    from appliance.commands.progress import ProgressBar

    table_path = os.path.abspath(args.out)
    fp32_path = companion_path(table_path, ".fp32.onnx")
    qdq_path = companion_path(table_path, ".qdq.onnx")
    version_tag = cache_format.version_tag(args.trt_version)
    paths = image_set.image_paths(args.images)
    image_set.check_readable(paths)
    prepare_outputs([table_path, fp32_path, qdq_path])
    model = load_model()
    print("calibrating {} on {} images".format(model.name, len(paths)))
    bar = ProgressBar()
    calibration = calibrate(model, paths, bar.update, args.threads)
    bar.finish()
    qdq_bytes = make_qdq_model(calibration.model, calibration.amax).SerializeToString()
    verdict = check_qdq_model(model, qdq_bytes, args.threads)
    write_all([(table_path, cache_format.format_table(calibration.amax, args.trt_version).encode("utf-8")),
               (fp32_path, calibration.model.SerializeToString()), (qdq_path, qdq_bytes)])
    print("{} tensors in INT8, EntropyCalibration2, TRT-{}; {} kept in higher precision (manifest "
          "int8_keep_float); {} conv pairs equalized".format(len(calibration.amax), version_tag,
                                                            len(calibration.kept_float), calibration.equalized_pairs))
    print("the INT8 Q/DQ model passes the acceptance check on the golden image: {}".format(verdict.reason))
    for path in (table_path, fp32_path, qdq_path):
        print("  {}  sha256 {}".format(path, file_sha256(path)))
    return EXIT_OK
