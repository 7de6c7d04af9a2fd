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
        backends.choose_backend("openvino")


def test_auto_falls_back_to_onnxruntime_where_tensorrt_is_missing():
    pytest.importorskip("onnxruntime")
    if subprocess.call([sys.executable, "-c", "import tensorrt"], stderr=subprocess.DEVNULL) == 0:
        pytest.skip("TensorRT is installed here")
    assert backends.choose_backend("auto").name == backends.resolve_backend("auto") == "onnxruntime"
    with pytest.raises(BackendUnavailable, match="'tensorrt' is not usable on this host"):
        backends.choose_backend("tensorrt")


def test_every_registered_backend_calls_itself_by_its_registered_name():
    pytest.importorskip("onnxruntime")
    assert backends.load_backend(backends.ONNXRUNTIME).name == backends.ONNXRUNTIME


def test_a_chosen_backend_is_passed_along_not_chosen_again(monkeypatch, tmp_path):
    """The daemon and the commands choose once and hand the Backend down: the engine manager and its
    acceptance check use that object (only the build child, another process, loads one by name)."""
    pytest.importorskip("onnxruntime")
    from appliance.config import schema as configuration
    from appliance.engine import acceptance
    from appliance.engine.setup import manager_for
    chosen = backends.choose_backend(backends.ONNXRUNTIME)
    monkeypatch.setattr(backends, "load_backend", lambda name: pytest.fail("{} chosen again".format(name)))
    monkeypatch.setattr(acceptance, "load_backend", lambda name: pytest.fail("{} loaded again".format(name)))
    manager = manager_for(configuration.defaults(), backend=chosen, cache_dir=str(tmp_path))
    assert manager.backend is chosen
    reference = acceptance.reference_for(manager.model, manager.size, backend=manager.backend)
    assert reference.source.startswith("the FP32 ONNX model under ONNX Runtime")


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
