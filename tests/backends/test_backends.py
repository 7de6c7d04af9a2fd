import ast
import os
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


def test_the_engine_vocabularies_are_one_tuple_each_auto_first():
    assert backends.PRECISION_CHOICES == (backends.AUTO,) + backends.PRECISIONS == ("auto", "int8", "fp16", "fp32")
    assert backends.BACKEND_CHOICES == (backends.AUTO,) + backends.BACKENDS == ("auto", "tensorrt", "onnxruntime")
    assert backends.BACKENDS == tuple(backends.SUPPORTED_BACKENDS)


def string_value(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if sys.version_info < (3, 8) and isinstance(node, ast.Str):   # Python 3.6 and 3.7 parse strings as Str
        return node.s
    return None


def test_no_module_retypes_the_precisions_or_the_backend_names():
    """A list of choices is imported from appliance.backends, never written out again: any literal tuple,
    list or set that names every precision, or every backend, elsewhere in the package is a second copy."""
    package = os.path.dirname(backends.__file__)
    root = os.path.dirname(package)
    copies = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == os.path.join(package, "__init__.py"):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    words = {string_value(item) for item in node.elts}
                    for vocabulary in (backends.PRECISIONS, backends.BACKENDS):
                        if words.issuperset(vocabulary):
                            copies.append("{}:{}".format(os.path.relpath(path, root), node.lineno))
    assert copies == []
