import cv2

from conftest import auto_precision_here, run_cli


def test_demo_runs_the_daemon_on_the_bundled_clip_without_a_broker_installed(tmp_path):
    out = tmp_path / "demo.jpg"
    result = run_cli("demo", "--out", out, "--cache-dir", tmp_path / "engines", cwd=str(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[status]     online" in result.stdout
    assert "[engine]     ready backend=onnxruntime precision={}".format(auto_precision_here()) in result.stdout
    assert "[detections] frame" in result.stdout and "[telemetry]" in result.stdout
    assert "80 frames processed" in result.stdout
    assert "recall 1.000, precision 1.000" in result.stdout
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (480, 640, 3)
