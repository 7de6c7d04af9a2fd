import numpy as np

from appliance.models.detections import Detections
from appliance.daemon.publish_policy import MaxRate, OnChange


def faces(*boxes):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32))


def test_on_change_publishes_arrivals_departures_and_moves_only():
    policy = OnChange()
    still = faces([0, 0, 10, 10])
    assert policy.should_publish(still)
    assert not policy.should_publish(faces([0.5, 0, 10.5, 10]))
    assert policy.should_publish(faces([30, 30, 40, 40]))
    assert policy.should_publish(faces())
    assert not policy.should_publish(faces())


def test_max_rate_limits_messages_per_second():
    now = [0.0]
    policy = MaxRate(2.0, clock=lambda: now[0])
    sent = 0
    for _ in range(100):
        sent += policy.should_publish(faces())
        now[0] += 0.05
    assert sent == 10
