import json
import os
import shutil

import cv2

from conftest import REPO_ROOT, run_cli

# Face centres in the group photo, labelled by eye (x, y in pixels of the 1280x886 image).
GROUP_FACE_CENTRES = [(110, 330), (324, 212), (519, 335), (792, 405), (956, 128), (1177, 336)]


def centre_inside(box, point):
    x1, y1, x2, y2 = box
    return x1 <= point[0] <= x2 and y1 <= point[1] <= y2


def test_detect_finds_every_face_of_a_group_photo(group_photo):
    result = run_cli("detect", "--json", group_photo)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    boxes = [face["box"] for face in report["faces"]]
    assert (report["width"], report["height"]) == (1280, 886)
    assert len(boxes) == len(GROUP_FACE_CENTRES)
    for centre in GROUP_FACE_CENTRES:
        assert sum(centre_inside(box, centre) for box in boxes) == 1, centre
    for face in report["faces"]:
        assert len(face["landmarks"]) == 5 and face["score"] > 0.9


def test_detect_prints_a_readable_summary(group_photo):
    result = run_cli("detect", group_photo)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "{}: 6 faces (1280x886)".format(group_photo)


def test_annotate_writes_one_image_per_input(group_photo, tmp_path):
    result = run_cli("detect", "--annotate", tmp_path / "out", group_photo)
    assert result.returncode == 0, result.stderr
    written = cv2.imread(str(tmp_path / "out" / "group.faces.jpg"))
    assert written is not None and written.shape == (886, 1280, 3)


def test_missing_image_is_reported_and_the_others_still_processed(group_photo, tmp_path):
    missing = tmp_path / "nope.jpg"
    result = run_cli("detect", "--json", missing, group_photo)
    assert result.returncode == 2
    assert "nope.jpg: no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 6


def test_unreadable_image_is_a_clear_error(tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    result = run_cli("detect", not_an_image)
    assert result.returncode == 2
    assert "notes.jpg: not an image" in result.stderr


def test_a_folder_is_not_an_image(tmp_path):
    result = run_cli("detect", tmp_path)
    assert result.returncode == 2
    assert "is a folder" in result.stderr


def test_no_image_is_a_usage_error():
    result = run_cli("detect")
    assert result.returncode == 2
    assert "IMAGE" in result.stderr


def test_altered_model_is_refused(tmp_path):
    engines = tmp_path / "engines"
    shutil.copytree(os.path.join(REPO_ROOT, "engines"), str(engines))
    with open(str(engines / "retinaface_mnet025.onnx"), "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01")
    result = run_cli("detect", engines / "golden.png", env={"FACEWATCH_ENGINES_DIR": str(engines)})
    assert result.returncode == 1
    assert "the file was altered" in result.stderr
