"""appliance/daemon/snapshots.py: annotated JPEGs of frames with faces, at most every interval, and on demand."""
import collections

import cv2
import numpy as np

from appliance.models.detections import Detections
from appliance.daemon.snapshots import Snapshots

Settings = collections.namedtuple("Settings", "enabled interval quality max_width")


def faces(count):
    boxes = np.array([[10 + 40 * i, 10, 40 + 40 * i, 50] for i in range(count)], np.float32).reshape(-1, 4)
    return Detections(boxes, np.full(count, 0.9, np.float32), np.zeros((count, 5, 2), np.float32))


def snapshots(clock, **settings):
    sent = []
    values = dict(enabled=True, interval=10.0, quality=80, max_width=640)
    values.update(settings)
    return Snapshots(Settings(**values), sent.append, clock=lambda: clock[0]), sent


def test_frames_with_faces_are_sent_at_most_every_interval():
    clock = [0.0]
    snap, sent = snapshots(clock)
    frame = np.full((480, 640, 3), 128, np.uint8)
    for t in range(0, 25):
        clock[0] = float(t)
        snap.offer(frame, faces(1))
    assert len(sent) == 3   # at 0, 10 and 20 s


def test_frames_without_faces_are_not_sent_but_the_command_sends_the_latest():
    clock = [0.0]
    snap, sent = snapshots(clock)
    assert snap.take() is None
    snap.offer(np.zeros((480, 640, 3), np.uint8), faces(0))
    assert sent == []
    size = snap.take()
    assert len(sent) == 1 and size == len(sent[0])


def test_disabled_snapshots_send_nothing_by_themselves():
    clock = [0.0]
    snap, sent = snapshots(clock, enabled=False)
    snap.offer(np.zeros((480, 640, 3), np.uint8), faces(2))
    assert sent == [] and snap.take() is not None and len(sent) == 1


def test_the_jpeg_is_annotated_and_no_wider_than_max_width():
    clock = [0.0]
    snap, sent = snapshots(clock, max_width=320, quality=90)
    frame = np.full((720, 1280, 3), 200, np.uint8)
    snap.offer(frame, faces(1))
    image = cv2.imdecode(np.frombuffer(sent[0], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 320, 3)
    assert np.abs(image.astype(int) - 200).max() > 50   # the box was drawn


def test_a_frame_taller_than_jpeg_allows_is_scaled_to_fit():
    from appliance.daemon.snapshots import encode
    image = cv2.imdecode(np.frombuffer(encode(np.zeros((66000, 8, 3), np.uint8), 640, 80), np.uint8),
                         cv2.IMREAD_COLOR)
    assert image.shape[0] <= 65500


def test_a_snapshot_that_cannot_be_made_is_counted_and_said_not_raised_into_the_pipeline(monkeypatch):
    import appliance.daemon.snapshots as snapshot
    clock = [0.0]
    snap, sent = snapshots(clock)
    monkeypatch.setattr(snapshot.cv2, "imencode", lambda *args: (False, None))
    snap.offer(np.zeros((480, 640, 3), np.uint8), faces(1))
    assert sent == [] and snap.stats()["failed"] == 1 and "could not be made" in snap.stats()["error"]
    try:
        snap.take()
    except snapshot.SnapshotFailed as exc:
        assert "640x480" in str(exc)
    else:
        raise AssertionError("take() hid the failure")
