"""TensorRT's calibration cache: what `trtexec --calib` and IInt8Calibrator.read_calibration_cache read.

    TRT-8201-EntropyCalibration2
    input: 3f8a3d71
    /fx/stage1/stage1.0/stage1.0.0/Conv_output_0: 3e1f0a2b

Line 1 is "TRT-<NV_TENSORRT_VERSION>-<algorithm>"; NV_TENSORRT_VERSION is major*1000+minor*100+patch
up to 8.x and major*10000+minor*100+patch from 10.0. Every other line is "<tensor name>: <8 hex
digits>", the IEEE-754 float32 bits of the tensor's scale as a big-endian integer, scale = amax/127.
"""
import re
import struct
from typing import NamedTuple

from appliance.errors import ModelError

ALGORITHM = "EntropyCalibration2"
INT8_MAX = 127.0
HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")

CalibrationCache = NamedTuple("CalibrationCache", [("version_tag", str), ("algorithm", str), ("amax", dict)])


class CalibrationTableError(ModelError):
    pass


def version_tag(trt_version):
    """"8.2.1" -> "8201", "10.3.0" -> "100300" (NV_TENSORRT_VERSION as TensorRT writes it)."""
    try:
        major, minor, patch = (int(part) for part in trt_version.split(".")[:3])
    except ValueError:
        raise CalibrationTableError("TensorRT version must be MAJOR.MINOR.PATCH, got {!r}".format(trt_version))
    factor = 1000 if major < 10 else 10000
    return str(major * factor + minor * 100 + patch)


def scale_hex(amax):
    scale = float(amax) / INT8_MAX
    return "{:08x}".format(struct.unpack(">I", struct.pack(">f", scale))[0])


def amax_from_hex(bits):
    return struct.unpack(">f", struct.pack(">I", int(bits, 16)))[0] * INT8_MAX


def format_table(amax_by_name, trt_version, algorithm=ALGORITHM):
    lines = ["TRT-{}-{}".format(version_tag(trt_version), algorithm)]
    lines.extend("{}: {}".format(name, scale_hex(amax)) for name, amax in amax_by_name.items())
    return "\n".join(lines) + "\n"


def parse_table(text, source="calibration table"):
    """CalibrationCache from the text of a table; CalibrationTableError naming the first bad line."""
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    header = HEADER.match(lines[0]) if lines else None
    if not header:
        raise CalibrationTableError("{} is not a TensorRT calibration table: line 1 must be "
                                    "'TRT-<version>-<algorithm>'".format(source))
    amax = {}
    for number, line in enumerate(lines[1:], start=2):
        match = LINE.match(line)
        if not match:
            raise CalibrationTableError("{} line {}: expected '<tensor name>: <8 hex digits>', got {!r}"
                                        .format(source, number, line[:80]))
        amax[match.group(1)] = amax_from_hex(match.group(2))
    return CalibrationCache(header.group(1), header.group(2), amax)


def read_table(path):
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationTableError("cannot read calibration table {}: {}".format(path, exc))
    return parse_table(text, path)

