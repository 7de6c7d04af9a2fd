"""Checks of the test harness itself: the fakes and helpers other tests stand on behave as the things they
stand in for. None of these is a check of facewatch; a failure here means a test elsewhere may be wrong."""
import importlib
import sys
import warnings

import pytest

from test_trt_backend import FAKES, VERSIONS, major


@pytest.fixture(params=sorted(VERSIONS, key=lambda v: tuple(map(int, v.split(".")))))
def fake_tensorrt(request, monkeypatch):
    """The fake `tensorrt` module of one version (tests/fakes/tensorrt), imported fresh."""
    monkeypatch.setenv("FAKE_TENSORRT_VERSION", request.param)
    monkeypatch.setenv("FAKE_GPU", VERSIONS[request.param])
    monkeypatch.syspath_prepend(FAKES)
    sys.modules.pop("tensorrt", None)
    yield importlib.import_module("tensorrt")
    sys.modules.pop("tensorrt", None)


def test_harness_the_fake_tensorrt_rejects_names_its_version_lacks(fake_tensorrt):
    """tests/backends/test_trt_backend.py trusts the fakes to fail a call to a name the real version lacks."""
    config = fake_tensorrt.Builder(fake_tensorrt.Logger()).create_builder_config()
    version = fake_tensorrt.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert hasattr(config, "max_workspace_size") == (major(version) < 10)
    checks = {"8.2.1": ["set_memory_pool_limit"], "8.6.1": [], "10.3.0": ["max_workspace_size"],
              "11.1.0": ["max_workspace_size", "int8_calibrator"]}
    for name in checks[version]:
        with pytest.raises(AttributeError):
            getattr(config, name)
    assert hasattr(fake_tensorrt.BuilderFlag, "INT8") == (not version.startswith("11."))
