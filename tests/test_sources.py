import pytest

from appliance import sources


@pytest.mark.parametrize("source, kind", [
    ("0", "v4l2"), (0, "v4l2"), ("/dev/video1", "v4l2"), ("/dev/v4l/by-id/usb-cam-video-index0", "v4l2"),
    ("csi://0", "gstreamer"), ("rtsp://cam/stream", "url"), ("http://cam/mjpg", "url"),
    ("/data/clip.mp4", "file"), ("videotestsrc ! videoconvert ! appsink", "gstreamer"),
])
def test_sources_are_recognised(source, kind):
    assert sources.parse_source(source).kind == kind


def test_csi_becomes_an_nvargus_pipeline_ending_in_appsink():
    spec = sources.parse_source("csi://1", 1920, 1080, 30)
    assert spec.target.startswith("nvarguscamerasrc sensor-id=1 ") and "width=1920" in spec.target
    assert spec.target.endswith("appsink drop=true max-buffers=1")


def test_a_pipeline_without_appsink_gets_one():
    assert sources.parse_source("videotestsrc ! videoconvert").target.endswith("! appsink drop=true max-buffers=1")


def test_credentials_are_hidden_whatever_the_password_holds():
    assert sources.describe("rtsp://admin:p@ss/w@cam:554/s") == "rtsp://***@cam:554/s"
    with pytest.raises(sources.SourceError) as error:
        sources.parse_source("rtsp://admin:pa/ss@cam/x")
    assert "admin" not in str(error.value) and ":pa" not in str(error.value)


def test_credentials_in_urls_are_not_shown():
    assert sources.describe("rtsp://admin:pw@cam/s") == "rtsp://***@cam/s"


@pytest.mark.parametrize("source, message", [
    ("", "is empty"), ("   ", "is empty"), (-1, "outside 0..1023"), ("5000", "outside 0..1023"),
    ("csi://front", "needs a sensor number"), ("csi://99", "needs a sensor number"),
    ("rtsp://", "names no host"), ("http://cam:99999/x", "not a valid URL"), ("ftp://cam/x", "not a camera scheme"),
    ("rtsp://cam/a b", "white space"), (True, "must be a device number or a string"),
    ("--1", "a file needs an absolute path"), ("²", "a file needs an absolute path"),
    ("clip.avi", "a file needs an absolute path"), ("videotestsrc", "a file needs an absolute path"),
])
def test_a_source_that_names_no_camera_says_why(source, message):
    with pytest.raises(sources.SourceError, match=message):
        sources.parse_source(source)
