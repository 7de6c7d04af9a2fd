import struct

import pytest

from appliance.calibration import cache_format
from appliance.calibration.cache_format import CalibrationTableError


def test_scales_survive_a_round_trip_through_the_file(tmp_path):
    amax = {"input": 151.0, "/fx/stage2/Conv_output_0": 3.25, "tiny": 1e-4, "conf": 1.0}
    path = tmp_path / "calibration.cache"
    path.write_text(cache_format.format_table(amax, "8.2.1"))
    cache = cache_format.read_table(str(path))
    assert list(cache.amax) == list(amax)
    for name, value in amax.items():
        assert cache.amax[name] == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("version, tag", [("8.2.1", "8201"), ("8.5.2", "8502"), ("8.6.1", "8601"),
                                          ("10.3.0", "100300"), ("11.1.0", "110100")])
def test_the_header_carries_nv_tensorrt_version(version, tag):
    text = cache_format.format_table({"input": 1.0}, version)
    assert text.splitlines()[0] == "TRT-{}-EntropyCalibration2".format(tag)


def test_each_line_holds_the_big_endian_bits_of_amax_over_127():
    lines = cache_format.format_table({"a": 1.0, "b": 255.0}, "8.6.1").splitlines()
    assert lines[1:] == ["a: 3c010204", "b: 40008102"]    # float32(1/127), float32(255/127)
    bits = int(lines[2].split(": ")[1], 16)
    assert struct.unpack(">f", struct.pack(">I", bits))[0] == pytest.approx(255.0 / 127)


def test_lines_written_by_tensorrt_read_back():
    # Lines of real tables quoted in the TensorRT API reference: ranges of about 1 and 255
    cache = cache_format.parse_table("TRT-8601-EntropyCalibration2\nx: 3c010a14\ny: 4000889d\n")
    assert cache.amax["x"] == pytest.approx(1.0, abs=1e-3)
    assert cache.amax["y"] == pytest.approx(255.0, rel=1e-3)


def test_every_line_of_the_shipped_tables_parses(model):
    assert len(model.calibration) >= 1
    for table in model.calibration:
        lines = open(table.path).read().splitlines()
        assert lines[0] == "TRT-{}-EntropyCalibration2".format(cache_format.version_tag(table.trt_version))
        assert all(cache_format.LINE.match(line) for line in lines[1:])
        assert len(cache_format.read_table(table.path).amax) == len(lines) - 1


@pytest.mark.parametrize("text, message", [
    ("", "line 1 must be 'TRT-<version>-<algorithm>'"),
    ("input: 3c010a14\n", "line 1 must be"),
    ("TRT-8201-EntropyCalibration2\ninput 3c010a14\n", "line 2: expected '<tensor name>: <8 hex digits>'"),
    ("TRT-8201-EntropyCalibration2\ninput: 3c01\n", "line 2"),
])
def test_a_malformed_table_names_its_first_bad_line(text, message):
    with pytest.raises(CalibrationTableError, match=message):
        cache_format.parse_table(text)


def test_a_bad_version_is_a_usage_error():
    with pytest.raises(CalibrationTableError, match="MAJOR.MINOR.PATCH"):
        cache_format.version_tag("eight")
