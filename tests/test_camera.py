import threading

import cv2
import pytest

from appliance import camera, config


def settings(**values):
    return config.build({"camera": values}, None).camera


@pytest.mark.parametrize("source, kind", [
    ("0", "v4l2"), (0, "v4l2"), ("/dev/video1", "v4l2"), ("csi://0", "gstreamer"),
    ("rtsp://cam/stream", "url"), ("http://cam/mjpg", "url"), ("/data/clip.mp4", "file"),
    ("videotestsrc ! videoconvert ! appsink", "gstreamer"),
])
def test_sources_are_recognised(source, kind):
    assert camera.parse_source(source).kind == kind


def test_csi_becomes_an_nvargus_pipeline_ending_in_appsink():
    spec = camera.parse_source("csi://1", 1920, 1080, 30)
    assert spec.target.startswith("nvarguscamerasrc sensor-id=1 ") and "width=1920" in spec.target
    assert spec.target.endswith("appsink drop=true max-buffers=1")


def test_credentials_in_urls_are_not_shown():
    assert camera.describe(camera.parse_source("rtsp://admin:pw@cam/s")) == "rtsp://***@cam/s"


@pytest.mark.skipif(camera.gstreamer_available(), reason="this OpenCV has GStreamer")
def test_a_gstreamer_source_without_gstreamer_says_what_to_install():
    with pytest.raises(camera.CameraError, match="built without GStreamer.*nvidia-opencv"):
        camera.open_capture(camera.parse_source("csi://0"), settings())


def test_a_file_without_loop_ends_and_keeps_only_the_newest_frame(clip):
    stop = threading.Event()
    source = camera.Camera(settings(source=clip[0]), stop).start()
    first = source.latest(timeout=5)
    assert first.index == 0 and first.image.shape == (480, 640, 3)
    import time
    time.sleep(1.0)
    newest = source.latest(timeout=5)
    assert newest.index > first.index + 1
    assert source.dropped >= newest.index - first.index - 1
    stop.set()
    source.stop()


def test_a_missing_file_is_reported_and_retried(tmp_path):
    stop = threading.Event()
    source = camera.Camera(settings(source=str(tmp_path / "none.mp4"), reconnect_min=0.05, reconnect_max=0.1), stop)
    source.start()
    assert source.latest(timeout=0.5) is None
    assert source.state == camera.RECONNECTING and "no such file" in source.error
    assert source.reconnects >= 2
    stop.set()
    source.stop()
