import pytest

from appliance.camera import sources


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


@pytest.mark.parametrize("source, shown", [
    ("http://cam/videostream.cgi?user=admin&pwd=secret", "http://cam/videostream.cgi?user=***&pwd=***"),
    ("rtsp://cam:554/live?channel=1&USER=admin&PassWord=secret&subtype=0",
     "rtsp://cam:554/live?channel=1&USER=***&PassWord=***&subtype=0"),
    ("https://cam/mjpg?api_key=secret#view", "https://cam/mjpg?api_key=***#view"),
    ("http://cam/s?access_token=secret&X-Amz-Signature=secret&sig=secret&p%77d=secret&fps=5",
     "http://cam/s?access_token=***&X-Amz-Signature=***&sig=***&p%77d=***&fps=5"),
    ("http://cam/cgi;login=admin;passwd=sec;ret", "http://cam/cgi;login=***"),
    ("http://admin:pw@cam/x?token=secret", "http://***@cam/x?token=***"),
    ("http://cam/x?key=secret&auth=secret&credentials=secret&client_secret=secret&username=admin",
     "http://cam/x?key=***&auth=***&credentials=***&client_secret=***&username=***"),
    ("souphttpsrc location=\"http://cam/m.mjpg?user=admin&pwd=secret\" ! jpegdec ! appsink",
     "souphttpsrc location=\"http://cam/m.mjpg?user=***&pwd=***\" ! jpegdec ! appsink"),
    ("rtspsrc location=rtsp://cam/s?token=secret user-id=admin user-pw=\"a secret\" ! decodebin ! appsink",
     "rtspsrc location=rtsp://cam/s?token=*** user-id=*** user-pw=*** ! decodebin ! appsink"),
    ("x264enc key-int-max=30 ! video/x-raw,format=BGR,width=640",
     "x264enc key-int-max=30 ! video/x-raw,format=BGR,width=640"),
])
def test_credentials_in_query_strings_and_pipelines_are_hidden_as_userinfo_is(source, shown):
    assert sources.describe(source) == shown
    assert "=secret" not in shown and "admin" not in shown


@pytest.mark.parametrize("message", [
    "cannot open camera source 'http://cam/x?user=admin&pwd=secret': 401",
    "OpenCV(4.5) error: (-2) could not open http://cam/x?pwd=se'cr\"et&user=admin in function 'open'",
    "('http://cam/x?user=admin&pwd=secret',)",
])
def test_credentials_quoted_in_an_error_message_are_hidden(message):
    assert "secret" not in sources.describe(message) and "admin" not in sources.describe(message)
    assert "pwd=***" in sources.describe(message)


def test_a_source_refused_with_credentials_in_it_does_not_show_them():
    for source in ("cam.mjpg?user=admin&pwd=secret", "http://cam:99999/x?pwd=secret", "http://cam/a b?pwd=secret"):
        with pytest.raises(sources.SourceError) as error:
            sources.parse_source(source)
        assert "secret" not in str(error.value) and "pwd=***" in str(error.value)
