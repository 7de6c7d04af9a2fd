"""How many inference threads, and backend threads each: decided from the settings, the backend's limit and
the CPUs, all pinned here (no test depends on this host's core count)."""
import pytest

from appliance.daemon.inference_plan import available_cpus, plan_inference

NO_LIMIT = (0, "")
TENSORRT = (1, "TensorRT serves from one thread (one CUDA context, one execution context)")


@pytest.mark.parametrize("cpus, expected", [(1, (1, 0)), (2, (2, 1)), (4, (2, 2)), (16, (2, 8))])
def test_auto_runs_two_inference_threads_sharing_the_cpus_out(cpus, expected):
    plan = plan_inference(0, 0, NO_LIMIT, cpus)
    assert (plan.workers, plan.threads) == expected
    assert plan.reason.startswith("auto: ")


def test_configured_workers_and_threads_are_obeyed():
    assert plan_inference(3, 0, NO_LIMIT, 12)[:2] == (3, 4)
    assert plan_inference(3, 5, NO_LIMIT, 2)[:2] == (3, 5)
    assert plan_inference(1, 0, NO_LIMIT, 8) == (1, 0, "engine.workers = 1")   # 0: ONNX Runtime's own choice


def test_a_backend_serving_from_one_thread_gets_one_and_a_larger_ask_is_reported_with_the_reason():
    assert plan_inference(0, 0, TENSORRT, 6) == (1, 0, "1 inference thread: " + TENSORRT[1])
    plan = plan_inference(4, 0, TENSORRT, 6)
    assert plan.workers == 1
    assert plan.reason == "engine.workers = 4 asked, 1 used: " + TENSORRT[1]


def test_the_cpus_counted_are_those_this_process_may_use(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert available_cpus() == 3
