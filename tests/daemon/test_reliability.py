"""The figures of docs/reliability.md: faults injected for real (a broker restarted or killed, a camera that
dies or hangs, facewatch killed or frozen, builds killed, engines corrupted, a long run), what a user then
observes on the broker and in /proc, against what is promised. `scripts/reliability_report.py` runs these
and writes the table; .ci/run runs them as part of the suite."""
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from appliance.engine.store import EngineRejected, EngineStore
from brokers import Mosquitto, Recorder, wait_until
from conftest import REPO_ROOT, run_cli
from fault_runner import LEAK_BYTES
from figures import record
from mjpeg_server import MjpegCamera, load_jpegs
from soak import WARM_UP, judge, process_figures, sample

pytestmark = pytest.mark.slow
PREFIX = "facewatch/testcam"
MOSQUITTO_KEEPALIVE_SCAN = 5.0


def seqs(recorder):
    return {message["seq"] for message in recorder.json_on("detections")}


def missing_below_max(recorder):
    received = seqs(recorder)
    return set(range(min(received), max(received) + 1)) - received if received else set()


@pytest.mark.parametrize("how", ["restart", "sigkill"])
def test_broker_restarts_lose_no_qos_1_detection(tmp_path, daemon_factory, clip, how):
    broker = Mosquitto(tmp_path, persistent=True).start()
    subscriber = Recorder(broker.port, PREFIX + "/detections", clean=False)
    wait_until(lambda: "test-recorder-persistent" in broker.log(), 10, message="the subscriber's session")
    daemon = daemon_factory(broker.port, {"source": clip[0], "loop": True}, detections={"qos": 1})
    try:
        wait_until(lambda: len(seqs(subscriber)) >= 10, 60, message="detections flowing")
        for cycle in range(10):
            lost_before = daemon.output().count("lost (")
            broker.stop(signal.SIGTERM if how == "restart" else signal.SIGKILL)
            wait_until(lambda: daemon.output().count("lost (") > lost_before, 30, message="the loss noticed")
            before = max(seqs(subscriber))
            broker = Mosquitto(tmp_path, persistent=True, port=broker.port).start()
            wait_until(lambda: max(seqs(subscriber)) > before + 5, 60, message="detections after cycle {}".format(cycle))
        wait_until(lambda: not missing_below_max(subscriber), 30, message="every seq up to the last")
        received = seqs(subscriber)
        lost = len(missing_below_max(subscriber))
        record("broker {} x10, QoS 1".format("clean restart" if how == "restart" else "SIGKILL"), cycles=10,
               messages=len(received), lost=lost)
        assert lost == 0 and daemon.process.poll() is None
    finally:
        subscriber.close()
        broker.stop()


def test_a_broker_down_for_minutes_keeps_the_queue_in_its_cap_and_counts_every_drop(tmp_path, daemon_factory, clip):
    down_seconds = float(os.environ.get("FACEWATCH_BROKER_DOWN_SECONDS", "120"))
    broker = Mosquitto(tmp_path, persistent=True).start()
    subscriber = Recorder(broker.port, PREFIX + "/#", clean=False)
    wait_until(lambda: "test-recorder-persistent" in broker.log(), 10, message="the subscriber's session")
    daemon = daemon_factory(broker.port, {"source": clip[0], "loop": True}, detections={"qos": 1},
                            mqtt={"queue_size": 200}, telemetry={"interval": 1.0})
    try:
        wait_until(lambda: len(seqs(subscriber)) >= 10, 60, message="detections flowing")
        broker.stop(signal.SIGTERM)
        samples = []
        deadline = time.monotonic() + down_seconds
        while time.monotonic() < deadline:
            samples.append(process_figures(daemon.process.pid)[0])
            time.sleep(2.0)  # a sampling period, not a synchronisation
        broker = Mosquitto(tmp_path, persistent=True, port=broker.port).start()
        wait_until(lambda: [t for t in subscriber.json_on("telemetry") if t["mqtt"]["reconnects"] >= 1
                            and t["mqtt"]["queue"] == 0], 60, message="the queue flushed after the outage")
        report = [t for t in subscriber.json_on("telemetry") if t["mqtt"]["queue"] == 0][-1]["mqtt"]
        gaps = len(missing_below_max(subscriber))
        settled = samples[len(samples) // 4:]
        growth = max(settled) - min(settled)
        counted = report["dropped_by_cause"].get("queue_full", 0)
        record("broker down for {:.0f} s".format(down_seconds), queue_cap=200, detections_dropped_counted=counted,
               detections_missing_at_subscriber=gaps, qos0_telemetry_dropped=report["dropped_by_cause"].get(
                   "disconnected", 0), rss_growth_mb=round(growth, 1))
        # QoS 1 detections beyond the cap are counted as queue_full; QoS 0 telemetry while down as disconnected.
        assert counted == gaps > 0
        assert report["dropped"] == counted + report["dropped_by_cause"].get("disconnected", 0)
        assert growth < 5.0, samples
    finally:
        subscriber.close()
        broker.stop()


def test_a_killed_facewatch_is_offline_within_a_second(mosquitto, daemon_factory, clip):
    delays = []
    for run in range(5):
        recorder = Recorder(mosquitto.port, PREFIX + "/status")
        daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, name="kill{}".format(run))
        wait_until(lambda: recorder.last("status") == "online", 60, message="online")
        killed = time.monotonic()
        daemon.process.kill()
        wait_until(lambda: recorder.last("status") == "offline", 10, message="offline", interval=0.01)
        delays.append(time.monotonic() - killed)
        daemon.process.wait()
        recorder.close()
    record("facewatch SIGKILL x5", worst_offline_s=round(max(delays), 2))
    assert max(delays) <= 1.0, delays


def test_a_frozen_facewatch_is_offline_within_one_and_a_half_keepalives(mosquitto, daemon_factory, clip):
    keepalive = 5
    recorder = Recorder(mosquitto.port, PREFIX + "/status")
    daemon = daemon_factory(mosquitto.port, {"source": clip[0], "loop": True}, mqtt={"keepalive": keepalive})
    wait_until(lambda: recorder.last("status") == "online", 60, message="online")
    frozen = time.monotonic()
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: recorder.last("status") == "offline", 30, message="offline", interval=0.05)
        delay = time.monotonic() - frozen
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    # The broker publishes the will; mosquitto 2.0 scans keepalives every 5 s (src/keepalive.c), so that
    # much comes on top of the 1.5 x keepalive MQTT allows.
    limit = 1.5 * keepalive + MOSQUITTO_KEEPALIVE_SCAN + 1
    record("facewatch SIGSTOP (keepalive {} s)".format(keepalive), offline_after_s=round(delay, 1), limit_s=limit)
    assert delay <= limit, delay


def test_a_camera_that_dies_or_hangs_100_times_comes_back_each_time(mosquitto, daemon_factory, clip):
    camera = MjpegCamera(load_jpegs(clip[0], limit=20), fps=20.0).start()
    recorder = Recorder(mosquitto.port, PREFIX + "/#")
    daemon = daemon_factory(mosquitto.port, {"source": camera.url, "stall_timeout": 0.5, "read_timeout": 0.5,
                                             "open_timeout": 0.5, "reconnect_min": 0.05, "reconnect_max": 0.2},
                            telemetry={"interval": 0.2})
    cycles = int(os.environ.get("FACEWATCH_CAMERA_CYCLES", "100"))
    wait_until(lambda: len(recorder.on("detections")) >= 5, 60, message="detections from the camera")
    baseline = process_figures(daemon.process.pid)
    worst = 0.0
    for cycle in range(cycles):
        seen = len(recorder.on("telemetry"))
        if cycle % 2:
            camera.hang()
        else:
            camera.kill()
        wait_until(lambda: any(t["camera"]["state"] != "streaming" for t in recorder.json_on("telemetry")[seen:]),
                   30, message="the camera loss in cycle {}".format(cycle))
        frames = len(recorder.on("detections"))
        returned = time.monotonic()
        if cycle % 2:
            camera.resume()
        else:
            camera = MjpegCamera(camera.jpegs, port=camera.port, fps=20.0).start()
        wait_until(lambda: len(recorder.on("detections")) > frames, 30, message="frames after cycle {}".format(cycle),
                   interval=0.02)
        worst = max(worst, time.monotonic() - returned)
    camera.kill()
    after = process_figures(daemon.process.pid)
    record("camera dies / hangs / returns x{}".format(cycles), worst_back_s=round(worst, 2),
           threads_before=baseline[2], threads_after=after[2], fds_before=baseline[1], fds_after=after[1])
    assert worst <= 10.0
    assert after[2] <= baseline[2] and after[1] <= baseline[1] + 2, (baseline, after)
    assert daemon.process.poll() is None


def test_thirty_builds_killed_at_random_moments_never_leave_a_loadable_partial_engine(tmp_path):
    cache = str(tmp_path / "engines")
    started = time.monotonic()
    assert run_cli("engines", "build", "--cache-dir", tmp_path / "timing").returncode == 0
    window = time.monotonic() - started   # kills fall within a build's duration, as measured here and now
    randomness = random.Random(30)
    killed, attempts, states, partial = 0, 0, 0, 0
    while killed < 30 and attempts < 150:
        attempts += 1
        build = subprocess.Popen([sys.executable, "-m", "appliance", "engines", "build", "--force", "--cache-dir", cache],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(randomness.uniform(0.0, window))  # the random moment of the kill
        os.killpg(build.pid, signal.SIGKILL)
        if build.wait() == -signal.SIGKILL:
            killed += 1
        else:
            window *= 0.8   # it finished first (a faster build than the first one): aim earlier
        store = EngineStore(cache)
        for entry in store.entries():
            states += 1
            try:
                store.verified(entry["name"], entry["key_inputs"])
            except EngineRejected:
                partial += 1  # a sidecar that vouches for an engine that is not whole
    assert not [p for p in glob.glob("/tmp/facewatch-build-*")]
    final = run_cli("engines", "build", "--cache-dir", cache)
    record("SIGKILL during builds x30", killed=killed, sidecars_checked=states, partial_engines_vouched=partial,
           next_build=final.stdout.split(" ", 1)[0])
    assert partial == 0 and killed == 30, (killed, attempts)
    assert final.returncode == 0, final.stderr
    assert not [n for n in os.listdir(cache) if ".tmp-" in n]


def test_every_corruption_of_a_cached_engine_is_caught(tmp_path, model):
    cache = str(tmp_path / "engines")
    assert run_cli("engines", "build", "--precision", "fp32", "--cache-dir", cache).returncode == 0
    store = EngineStore(cache)
    [entry] = store.entries()
    path, inputs = store.engine_path(entry["name"]), entry["key_inputs"]
    with open(path, "rb") as f:
        original = f.read()
    randomness = random.Random(100)
    caught = 0
    kinds = ("flip", "truncate", "zero block", "append", "other bytes")
    for index in range(100):
        kind = kinds[index % len(kinds)]
        data = bytearray(original)
        if kind == "flip":
            position = randomness.randrange(len(data))
            data[position] ^= 1 << randomness.randrange(8)
        elif kind == "truncate":
            data = data[:randomness.randrange(len(data))]
        elif kind == "zero block":
            start = randomness.randrange(len(data) - 4096)
            data[start:start + 4096] = bytes(4096)
        elif kind == "append":
            data += os.urandom(randomness.randrange(1, 100))
        else:
            data = bytearray(os.urandom(len(data)))
        if bytes(data) == original:
            data.append(0)
        with open(path, "wb") as f:
            f.write(data)
        try:
            store.verified(entry["name"], inputs)
        except EngineRejected:
            caught += 1
    rebuilt = run_cli("engines", "build", "--precision", "fp32", "--cache-dir", cache)
    record("corrupted engines x100", caught=caught, rebuilt_after=rebuilt.stdout.startswith("built "))
    assert caught == 100 and rebuilt.returncode == 0 and rebuilt.stdout.startswith("built ")


def soak(port, daemon_factory, clip, seconds, fault=None):
    """The daemon on the looped clip, as fast as it goes, sampled for `seconds` once it publishes telemetry
    (tests/soak.py): (samples, frames processed per second over them)."""
    recorder = Recorder(port, PREFIX + "/telemetry")
    try:
        daemon = daemon_factory(port, {"source": clip, "loop": True, "realtime": False}, fault=fault,
                                telemetry={"interval": 1.0})
        wait_until(lambda: recorder.on("telemetry"), 60, message="telemetry")
        first = recorder.json_on("telemetry")[-1]
        samples = sample(daemon.process.pid, seconds)
        assert daemon.process.poll() is None, daemon.output()[-2000:]
        last = recorder.json_on("telemetry")[-1]
    finally:
        recorder.close()
    return samples, (last["processed"] - first["processed"]) / max(last["uptime"] - first["uptime"], 1.0)


def test_a_long_run_keeps_memory_descriptors_and_threads_flat(mosquitto, daemon_factory, clip):
    seconds = float(os.environ.get("FACEWATCH_SOAK_SECONDS", "90"))
    samples, frames_per_s = soak(mosquitto.port, daemon_factory, clip[0], seconds)
    verdict = judge(samples)
    settled = samples[int(len(samples) * WARM_UP):]
    record("soak {:.0f} s".format(seconds), frames_per_s=round(frames_per_s, 1),
           growth_mb_per_h=round(verdict.growth_mb_per_h, 1), bound_mb_per_h=verdict.bound_mb_per_h,
           largest_step_mb=round(verdict.largest_step_mb, 2), rise_mb=round(verdict.rise_mb, 2),
           rss_mb=[round(settled[0].rss, 1), round(settled[-1].rss, 1)], fds=sorted({s.fds for s in settled}),
           threads=sorted({s.threads for s in settled}))
    # growth, not a step: judged by the same judge() that catches a leaking daemon (the test below)
    assert verdict.flat, "{}; RSS {}".format(verdict, [round(s.rss, 2) for s in samples])
    # flat: the last third never above the first (a decoder may start and end a thread in between; a leak grows)
    third = max(1, len(settled) // 3)
    for field in ("fds", "threads"):
        first, last = [getattr(s, field) for s in settled[:third]], [getattr(s, field) for s in settled[-third:]]
        assert max(last) <= max(first), (field, settled)


def test_the_soak_passes_a_daemon_whose_rss_steps_once_after_a_backlog(mosquitto, daemon_factory, clip):
    """The issue's failure, made on purpose (tests/fault_runner.py backlog): once, the publish thread waits
    until the ordered hand-over overflows, and glibc keeps the memory of the frames that were queued. A step
    that then stays flat is not a leak: the soak's judgement passes it, where max - min (bound 5 MB) did not."""
    samples, frames_per_s = soak(mosquitto.port, daemon_factory, clip[0], 30, fault="backlog")
    verdict = judge(samples)
    record("soak, daemon with one backlog", frames_per_s=round(frames_per_s, 1),
           growth_mb_per_h=round(verdict.growth_mb_per_h, 1), rise_mb=round(verdict.rise_mb, 2),
           largest_step_mb=round(verdict.largest_step_mb, 2), bound_mb_per_h=verdict.bound_mb_per_h)
    assert verdict.rise_mb >= 3.0, "no step to judge (the allocator handed the backlog's memory back): {}".format(
        verdict)
    assert verdict.flat, "{}; RSS {}".format(verdict, [round(s.rss, 2) for s in samples])


def test_the_soak_catches_a_daemon_that_leaks_64_kb_a_frame(mosquitto, daemon_factory, clip):
    """The soak's judgement on a daemon that keeps 64 KB of every frame it publishes (tests/fault_runner.py
    leak): a soak that passes a leaking daemon is as wrong as one that fails a healthy one."""
    samples, frames_per_s = soak(mosquitto.port, daemon_factory, clip[0], 20, fault="leak")
    verdict = judge(samples)
    leaked = LEAK_BYTES * frames_per_s * 3600 / 2.0 ** 20
    record("soak, daemon leaking 64 KB a frame", frames_per_s=round(frames_per_s, 1),
           growth_mb_per_h=round(verdict.growth_mb_per_h), leaked_mb_per_h=round(leaked),
           bound_mb_per_h=verdict.bound_mb_per_h, caught=not verdict.flat)
    assert not verdict.flat, "{}; RSS {}".format(verdict, [round(s.rss, 2) for s in samples])


def acl_broker(tmp_path):
    """mosquitto with the shipped per-device ACL (examples/mosquitto/) and users cam1, cam2, operator."""
    example = os.path.join(REPO_ROOT, "examples", "mosquitto")
    passwords = tmp_path / "passwords"
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user in ("cam1", "cam2", "operator"):
        subprocess.check_call([passwd, "-b"] + (["-c"] if user == "cam1" else []) + [str(passwords), user, user + "-pw"])
    passwords.chmod(0o644)
    return Mosquitto(tmp_path, "allow_anonymous false\npassword_file {}\nacl_file {}\n".format(
        passwords, os.path.join(example, "acl"))).start()


def client(port, user, pattern=None):
    recorder = Recorder(port, pattern or "$SYS/none", credentials=(user, user + "-pw"))
    wait_until(recorder.subscribed.is_set, 10, message="{} connected".format(user))
    return recorder


def test_per_device_acls_keep_each_device_to_its_own_topics(tmp_path, daemon_factory, clip):
    broker = acl_broker(tmp_path)
    (tmp_path / "cam1-pw").write_text("cam1-pw\n")
    daemon_factory(broker.port, {"source": clip[0], "loop": True}, device="cam1",
                   mqtt={"username": "cam1", "password_file": str(tmp_path / "cam1-pw")})
    operator = client(broker.port, "operator", "facewatch/#")
    intruder = client(broker.port, "cam2", "facewatch/cam1/#")
    try:
        wait_until(lambda: len(operator.on("detections")) >= 10, 60, message="cam1's detections at the operator")
        for topic, payload in (("facewatch/cam1/status", "offline"), ("facewatch/cam1/cmd/rebuild", "{}"),
                               ("facewatch/all/cmd/rebuild", "{}"), ("facewatch/cam1/detections", "{}")):
            intruder.client.publish(topic, payload, qos=1).wait_for_publish(5)
        intruder.client.publish("facewatch/cam2/status", "marker", qos=1).wait_for_publish(5)
        wait_until(lambda: operator.on("status") and operator.last("status") == "marker", 10,
                   message="the intruder's own topic to arrive (the broker has handled all before it)")
        forged = [t for t, p, _ in operator.messages if t.startswith("facewatch/cam1/") and p in ("offline", "{}")]
        forged += [t for t, p, _ in operator.messages if t == "facewatch/all/cmd/rebuild"]
        read = [t for t, _, _ in intruder.messages]
        record("per-device MQTT ACLs", forged_delivered=len(forged), foreign_messages_read=len(read),
               own_messages_delivered=len(operator.on("detections")))
        assert forged == [] and read == []
    finally:
        operator.close()
        intruder.close()
        broker.stop()
