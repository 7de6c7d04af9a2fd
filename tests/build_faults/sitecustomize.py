"""Build faults for the tests, injected into the build child from outside the shipped code.

Python imports `sitecustomize` at start-up from sys.path, so a process started with this folder on its
PYTHONPATH (conftest.build_fault_env; the build child inherits the daemon's environment) runs this file
first. Only when FACEWATCH_BUILD_FAULT is set, and only in the build child (`python -m
appliance.engine.build_child`), the backend that appliance.backends.load_backend returns gets a
build_engine whose progress callback, after the phase is reported, does the fault:

  "sigkill"              the child SIGKILLs itself at its first phase;
  "sigkill:workspace>=N" the same, only when the job's workspace_mb is at least N;
  "hang"                 the build sleeps without a word until it is stopped;
  "silent:N"             the build works N seconds (CPU) without a word, as TensorRT before 10.x does,
                         then goes on and finishes.

appliance.backends is patched when it is first imported (an import hook: nothing of appliance is imported
here). This file shadows any other sitecustomize (Debian's installs apport's hook) in those processes only.
"""
import importlib.abc
import importlib.util
import os
import signal
import sys
import time

FAULT = os.environ.get("FACEWATCH_BUILD_FAULT", "")
BUILD_CHILD = "appliance.engine.build_child"


def in_build_child():
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == BUILD_CHILD


def fault_due(fault, job):
    """True when the fault applies to this job; "hang" and "silent:N" do their part here."""
    if fault == "hang":
        while True:
            time.sleep(60)
    if fault.startswith("silent:"):
        deadline = time.monotonic() + float(fault.split(":", 1)[1])
        while time.monotonic() < deadline:
            sum(i * i for i in range(10000))
        return False
    if not fault.startswith("sigkill"):
        return False
    _, _, condition = fault.partition(":")
    if condition.startswith("workspace>="):
        return job["workspace_mb"] >= int(condition[len("workspace>="):])
    return True


def with_fault(build_engine, fault):
    def faulty_build_engine(job, progress):
        pending = [fault]

        def faulty_progress(phase, fraction):
            progress(phase, fraction)
            if pending and fault_due(pending.pop(), job):   # at the first phase only, as a crash would
                os.kill(os.getpid(), signal.SIGKILL)
        return build_engine(job, faulty_progress)
    return faulty_build_engine


def patch(backends):
    load_backend = backends.load_backend

    def load_backend_with_fault(name):
        backend = load_backend(name)
        if in_build_child():
            backend.build_engine = with_fault(backend.build_engine, FAULT)
        return backend
    backends.load_backend = load_backend_with_fault


class PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        patch(module)

    def __getattr__(self, name):   # get_source, get_filename... for tracebacks and tools
        return getattr(self.loader, name)


class BackendsHook(importlib.abc.MetaPathFinder):
    """Wraps the loader of appliance.backends, once, so its module is patched as soon as it is executed."""

    def find_spec(self, name, path, target=None):
        if name != "appliance.backends":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = PatchingLoader(spec.loader)
        return spec


if FAULT:
    sys.meta_path.insert(0, BackendsHook())
