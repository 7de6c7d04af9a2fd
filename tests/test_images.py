"""Hostile image files: refused before any large allocation, with a clear reason, never a hang."""
import os
import struct
import subprocess
import sys
import zlib

import pytest

from appliance import images
from appliance.images import ImageError, read_image
from figures import record


def png(width, height, rows=None):
    """A valid PNG header declaring width x height, with `rows` rows of real (all-zero) pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"".join(b"\x00" + bytes(width * 3) for _ in range(rows if rows is not None else height)), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A small PNG declaring 30000 x 30000 pixels (2.7 GB decoded)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png(30000, 30000, rows=8))
    return path


def test_a_png_declaring_30000_by_30000_is_refused_before_decoding(bomb):
    # VmHWM, the peak RSS of this process image: ru_maxrss would carry over the forking test worker's peak
    # across exec (a worker that had just sent 200 MB publishes reported 777 MB here)
    code = ("import sys\n"
            "from appliance.images import read_image, ImageError\n"
            "try:\n    read_image(sys.argv[1])\nexcept ImageError as e:\n    print(e)\n"
            "status = open('/proc/self/status').read()\n"
            "print(int(status.split('VmHWM:')[1].split()[0]) // 1024)\n")
    result = subprocess.run([sys.executable, "-c", code, str(bomb)], stdout=subprocess.PIPE, universal_newlines=True,
                            timeout=60)
    message, peak_mb = result.stdout.splitlines()
    refused = "megapixels; the limit is 64" in message
    record("image declaring 30000x30000 pixels", refused=refused, peak_rss_mb=int(peak_mb),
           file_bytes=bomb.stat().st_size)
    assert refused, message
    assert int(peak_mb) < 500, "peak RSS {} MB".format(peak_mb)


def test_an_image_just_over_the_pixel_limit_is_refused_and_one_under_is_read(tmp_path):
    over = tmp_path / "over.png"
    over.write_bytes(png(8001, 8000, rows=1))
    with pytest.raises(ImageError, match="8001x8000 pixels"):
        read_image(str(over))
    under = tmp_path / "under.png"
    under.write_bytes(png(64, 48))
    assert read_image(str(under)).shape == (48, 64, 3)


def test_a_file_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(png(64, 48) + b"\x00" * 2000)
    with pytest.raises(ImageError, match="larger than the 1000 bytes limit"):
        read_image(str(path))


def not_an_image(kind, folder):
    """A path to something that is not a readable image file, of the given kind."""
    if kind == "device":
        return "/dev/zero"
    if kind == "folder":
        return str(folder)
    path = folder / kind
    if kind == "fifo":
        os.mkfifo(str(path))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(png(64, 48)[:60])
    elif kind == "text":
        path.write_text("hello")
    return str(path)


@pytest.mark.parametrize("kind, message", [
    ("device", "is a device, not a file"), ("folder", "is a folder, not a file"),
    ("fifo", "is a FIFO (named pipe), not a file"), ("empty", "is empty"), ("truncated", "not an image"),
    ("text", "not an image"), ("missing", "no such file"),
])
def test_what_is_not_an_image_file_is_named_without_blocking(tmp_path, kind, message):
    with pytest.raises(ImageError) as error:
        read_image(not_an_image(kind, tmp_path))
    assert message in str(error.value)
