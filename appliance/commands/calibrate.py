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
    parser.add_argument("--trt-version", default=DEFAULT_TRT_VERSION, metavar="X.Y.Z",
                        help="TensorRT version named in the table's header (default: {}, JetPack 4.6)"
                        .format(DEFAULT_TRT_VERSION))
    parser.add_argument("--threads", type=arguments.non_negative_int, default=0,
                        help="ONNX Runtime threads (default 0: its own choice)")


def companion_path(table_path, suffix):
    return os.path.splitext(table_path)[0] + suffix


def prepare_output_folder(path):
    from appliance.errors import UsageError
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise UsageError("cannot create the folder of {}: {}".format(path, exc.strerror or exc))


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
    from appliance.files import atomic_write_bytes, file_sha256
    from appliance.manifest import load_model
    from appliance.progress import ProgressBar

    table_path = os.path.abspath(args.out)
    fp32_path = companion_path(table_path, ".fp32.onnx")
    qdq_path = companion_path(table_path, ".qdq.onnx")
    version_tag = cache_format.version_tag(args.trt_version)
    paths = image_set.image_paths(args.images)
    image_set.check_readable(paths)
    prepare_output_folder(table_path)
    model = load_model()
    print("calibrating {} on {} images".format(model.name, len(paths)))
    bar = ProgressBar()
    calibration = calibrate(model, paths, bar.update, args.threads)
    bar.finish()
    atomic_write_bytes(table_path, cache_format.format_table(calibration.amax, args.trt_version).encode("utf-8"))
    atomic_write_bytes(fp32_path, calibration.model.SerializeToString())
    atomic_write_bytes(qdq_path, make_qdq_model(calibration.model, calibration.amax).SerializeToString())
    print("{} tensors in INT8, EntropyCalibration2, TRT-{}; {} kept in higher precision (manifest "
          "int8_keep_float); {} conv pairs equalized".format(len(calibration.amax), version_tag,
                                                            len(calibration.kept_float), calibration.equalized_pairs))
    for path in (table_path, fp32_path, qdq_path):
        print("  {}  sha256 {}".format(path, file_sha256(path)))
    return EXIT_OK
