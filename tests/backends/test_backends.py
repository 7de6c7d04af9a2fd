import subprocess
import sys

import pytest

from appliance import backends
from appliance.errors import BackendUnavailable, UsageError


def test_detection_on_onnxruntime_never_imports_tensorrt_or_pycuda():
    code = ("import sys, numpy as np\n"
            "from appliance.commands.detect_session import open_detector\n"
            "with open_detector('onnxruntime') as d: d.detect(np.zeros((48, 64, 3), np.uint8))\n"
            "print(sorted(m for m in ('tensorrt', 'pycuda', 'jtop') if m in sys.modules))\n")
    output = subprocess.check_output([sys.executable, "-c", code], universal_newlines=True)
    assert output.strip() == "[]"


def test_unknown_backend_names_the_choices():
    with pytest.raises(UsageError, match="choose one of: auto, onnxruntime, tensorrt"):
        backends.resolve_backend("openvino")


def test_auto_falls_back_to_onnxruntime_where_tensorrt_is_missing():
    pytest.importorskip("onnxruntime")
    if subprocess.call([sys.executable, "-c", "import tensorrt"], stderr=subprocess.DEVNULL) == 0:
        pytest.skip("TensorRT is installed here")
    assert backends.resolve_backend("auto") == "onnxruntime"
    with pytest.raises(BackendUnavailable, match="'tensorrt' is not usable on this host"):
        backends.resolve_backend("tensorrt")
