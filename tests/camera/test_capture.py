import os
import threading

import cv2
import numpy as np
import pytest

from appliance.camera import capture as camera

from appliance.config import schema as config
from brokers import wait_until


def settings(**values):
    return config.build({"camera": values}, None).camera


@pytest.fixture
def running():
    """Start a Camera's loop on a thread; stop and join it after the test."""
    started = []

    def start(camera_settings):
        stop = threading.Event()
        source = camera.Camera(camera_settings, stop)
        thread = threading.Thread(target=source.run, daemon=True)
        thread.start()
        started.append((stop, source, thread))
        return source
    yield start
    for stop, source, thread in started:
        stop.set()
        source.wake()
        thread.join(5)
        assert not thread.is_alive()


@pytest.mark.skipif(camera.gstreamer_available(), reason="this OpenCV has GStreamer")
def test_a_gstreamer_source_without_gstreamer_says_what_to_install():
    source = camera.Camera(settings(source="csi://0"), threading.Event())
    with pytest.raises(camera.CameraError, match="built without GStreamer.*nvidia-opencv"):
        camera.open_capture(source.spec, source.settings)


def test_a_realtime_file_keeps_only_the_newest_frame(running, clip):
    source = running(settings(source=clip[0]))
    first = source.latest(timeout=5)
    assert first.index == 0 and first.image.shape == (480, 640, 3)
    wait_until(lambda: source.frames >= first.index + 5, 10, message="frames to arrive unread")
    newest = source.latest(timeout=5)
    assert newest.index > first.index + 1
    assert source.dropped + source.skipped >= newest.index - first.index - 1


def test_a_file_read_not_in_realtime_hands_over_every_frame_then_ends(running, clip):
    source = running(settings(source=clip[0], realtime=False))
    indices = []
    while True:
        frame = source.latest(timeout=10)
        if frame is None:
            break
        indices.append(frame.index)
    assert indices == list(range(80))
    assert source.state == camera.ENDED and source.dropped == 0


def test_a_camera_without_an_error_says_null_in_its_stats_as_telemetry_shows_them(running, clip):
    source = running(settings(source=clip[0]))
    assert source.latest(timeout=5) is not None
    assert source.stats()["error"] is None and source.stats()["state"] == camera.STREAMING


def test_a_missing_file_is_reported_and_retried(running, tmp_path):
    source = running(settings(source=str(tmp_path / "none.mp4"), reconnect_min=0.05, reconnect_max=0.1))
    wait_until(lambda: source.reconnects >= 2, 10, message="two retries")
    assert source.state == camera.RECONNECTING and "no such file" in source.error
    assert source.latest(timeout=0.1) is None


def test_a_fifo_is_refused_without_blocking(running, tmp_path):
    fifo = str(tmp_path / "camera.fifo")
    os.mkfifo(fifo)
    source = running(settings(source=fifo, reconnect_min=0.05, reconnect_max=0.1))
    wait_until(lambda: source.reconnects >= 1, 10, message="the FIFO to be refused")
    assert "FIFO" in source.error


def test_a_camera_that_raises_is_marked_failed_and_the_error_kept(clip, monkeypatch):
    def broken(capture):
        raise RuntimeError("decoder exploded")
    source = camera.Camera(settings(source=clip[0]), threading.Event())
    monkeypatch.setattr(source, "_stream", broken)
    with pytest.raises(RuntimeError):
        source.run()
    assert source.state == camera.FAILED and "decoder exploded" in source.error
    assert source.finished()


def test_a_file_with_no_decodable_frame_backs_off_instead_of_spinning(running, tmp_path):
    empty = str(tmp_path / "empty.avi")
    cv2.VideoWriter(empty, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    changes = []
    stop = threading.Event()
    source = camera.Camera(settings(source=empty, loop=True, reconnect_min=0.05, reconnect_max=0.1),
                           stop, on_state=lambda: changes.append(source.state))
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: source.reconnects >= 3, 10, message="three retries")
        assert source.state == camera.RECONNECTING and "no frame could be decoded" in source.error
        assert camera.STREAMING not in changes and source.problem().startswith("reconnecting: ")
    finally:
        stop.set()
        source.wake()
        thread.join(5)


def write_counting_clip(path, frames, fps):
    """A clip whose frame i is a flat grey of 2*i mod 256: a handed frame's index can be checked by eye."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(frames):
        writer.write(np.full((120, 160, 3), (2 * i) % 256, np.uint8))
    writer.release()
    return str(path)


def test_frames_nobody_will_take_are_grabbed_but_not_decoded(running, tmp_path):
    source = running(settings(source=write_counting_clip(tmp_path / "fast.avi", 480, 240.0)))
    consumer_pace = threading.Event()
    handed = []
    while True:
        frame = source.latest(timeout=5)
        if frame is None:
            break
        handed.append(frame)
        consumer_pace.wait(0.05)  # an inference of 50 ms: 20 frames/s from a 240 frames/s source
    assert source.state == camera.ENDED and source.frames == 480
    decoded = source.frames - source.skipped
    assert source.skipped >= 240 and decoded <= 3 * len(handed) + 5, (source.skipped, len(handed))
    assert [f.index for f in handed] == sorted(set(f.index for f in handed))
    for frame in handed:
        assert abs(float(frame.image.mean()) - (2 * frame.index) % 256) < 4, frame.index


def test_a_file_plays_from_its_first_frame_however_late_the_pipeline_asks(running, clip):
    source = running(settings(source=clip[0]))
    wait_until(lambda: source.frame_size is not None, 10, message="the first frame")
    threading.Event().wait(0.5)  # five of the clip's frame periods, with nobody asking
    assert source.latest(timeout=5).index == 0
    assert source.latest(timeout=5).index >= 1


def test_the_frame_size_is_learned_from_the_first_frame(running, clip):
    assert running(settings(source=clip[0])).wait_for_frame_size(10) == (640, 480)


def test_no_frame_size_is_invented_for_a_source_that_does_not_open(running, tmp_path):
    source = running(settings(source=str(tmp_path / "missing.avi"), reconnect_min=0.05, reconnect_max=0.1))
    assert source.wait_for_frame_size(0.3) is None


@pytest.mark.parametrize("shape, dtype", [((48, 64), np.uint8), ((48, 64, 1), np.uint8), ((48, 64, 4), np.uint8),
                                          ((48, 64, 3), np.uint16)])
def test_grey_bgra_and_16_bit_frames_become_8_bit_bgr(shape, dtype):
    from appliance.camera.capture import as_bgr
    value = 200 * 256 if dtype == np.uint16 else 200
    frame = as_bgr(np.full(shape, value, dtype))
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and (frame == 200).all()


def test_a_frame_of_another_shape_is_a_clear_camera_error():
    from appliance.camera.capture import CameraError, as_bgr
    with pytest.raises(CameraError, match=r"frames of shape \[48, 64, 2\]"):
        as_bgr(np.zeros((48, 64, 2), np.uint8))


def test_credentials_in_a_url_source_appear_in_no_state_error_or_log_line(running, caplog):
    """userinfo and ?user=&pwd= alike: the source as camera.stats() (telemetry's camera.source) shows it, the
    error a failed open leaves (camera.error) and the warning logged for it."""
    import logging
    from brokers import free_port
    caplog.set_level(logging.INFO, logger="appliance.camera.capture")
    url = "http://viewer:secret@127.0.0.1:{}/videostream.cgi?user=admin&pwd=secret&rate=0".format(free_port())
    source = running(settings(source=url, open_timeout=1.0, reconnect_min=0.05, reconnect_max=0.1))
    wait_until(lambda: source.reconnects >= 2, 20, message="two failed opens")
    stats = source.stats()
    assert stats["source"].endswith("/videostream.cgi?user=***&pwd=***&rate=0") and "://***@" in stats["source"]
    assert stats["error"].startswith("cannot open camera source") and "pwd=***" in stats["error"]
    logged = [record.getMessage() for record in caplog.records]
    assert any("pwd=***" in line for line in logged)
    assert "secret" not in repr(stats) + source.problem() + "\n".join(logged)
    assert "admin" not in repr(stats) + "\n".join(logged)


def test_an_error_that_quotes_the_url_with_its_credentials_is_kept_without_them(clip, monkeypatch):
    def broken(capture):
        raise RuntimeError("could not read http://cam/s.mjpg?user=admin&pwd=secret: 401")
    source = camera.Camera(settings(source=clip[0]), threading.Event())
    monkeypatch.setattr(source, "_stream", broken)
    with pytest.raises(camera.CameraError) as raised:  # what the supervisor logs when the thread ends
        source.run()
    assert source.state == camera.FAILED and "could not read http://cam/s.mjpg?user=***&pwd=***" in source.error
    assert "secret" not in source.error and "secret" not in str(raised.value) and "admin" not in str(raised.value)
