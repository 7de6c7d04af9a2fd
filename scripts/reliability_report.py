#!/usr/bin/env python3
"""Run the tests that measure facewatch under faults and write docs/reliability.md from what they recorded.

    python3 scripts/reliability_report.py [--out docs/reliability.md] [pytest args...]

Each test records its figures (tests/figures.py) into a JSON-lines file; this script runs them with
FACEWATCH_FIGURES pointing there, then renders one table row per fault: what is expected, what was
measured, and the command that reproduces it. A row whose test did not record anything says so.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELIABILITY = "tests/daemon/test_reliability.py"

# (fault recorded by the test, what is promised, the pytest node that measures it, how to show the figures)
ROWS = [
    ("broker clean restart x10, QoS 1", "0 QoS 1 detections lost, counted by `seq` at a subscriber",
     RELIABILITY + "::test_broker_restarts_lose_no_qos_1_detection[restart]",
     "{lost} lost of {messages} received over {cycles} restarts"),
    ("broker SIGKILL x10, QoS 1", "0 QoS 1 detections lost, counted by `seq` at a subscriber",
     RELIABILITY + "::test_broker_restarts_lose_no_qos_1_detection[sigkill]",
     "{lost} lost of {messages} received over {cycles} kills"),
    ("broker down for 120 s", "queue within `mqtt.queue_size`; RSS flat; drops counted = drops seen",
     RELIABILITY + "::test_a_broker_down_for_minutes_keeps_the_queue_in_its_cap_and_counts_every_drop",
     "queue cap {queue_cap} held; {detections_dropped_counted} detections counted dropped, "
     "{detections_missing_at_subscriber} missing at the subscriber; {qos0_telemetry_dropped} QoS 0 telemetry "
     "dropped while down; RSS +{rss_growth_mb} MB"),
    ("QoS 0 queue bound with a stalled broker", "QoS 0 bounded too; overflow counted",
     "tests/mqtt/test_link.py::test_the_outgoing_queue_is_bounded_for_qos_0_and_overflow_is_counted",
     "at most {queued_max} queued; {dropped} of {published} counted dropped"),
    ("facewatch SIGKILL x5", "retained `offline` within 1 s",
     RELIABILITY + "::test_a_killed_facewatch_is_offline_within_a_second", "worst {worst_offline_s} s"),
    ("facewatch SIGSTOP (keepalive 5 s)", "retained `offline` within 1.5 x keepalive + 1 s, plus up to 5 s "
     "for mosquitto's keepalive scan (it checks every 5 s: src/keepalive.c)",
     RELIABILITY + "::test_a_frozen_facewatch_is_offline_within_one_and_a_half_keepalives",
     "{offline_after_s} s (limit {limit_s} s)"),
    ("camera dies / hangs / returns x100", "back within 10 s of its return; no hung thread; fds flat",
     RELIABILITY + "::test_a_camera_that_dies_or_hangs_100_times_comes_back_each_time",
     "worst {worst_back_s} s; threads {threads_before} -> {threads_after}; fds {fds_before} -> {fds_after}"),
    ("camera thread raises", "exit 1 naming the thread and cause; retained `offline`",
     "tests/daemon/test_app_faults.py::test_a_thread_that_raises_ends_the_daemon_with_exit_1_and_says_why",
     "exit {exit_code}, `{retained_status}` retained"),
    ("inference thread raises", "exit 1 naming the thread and cause; retained `offline`",
     "tests/daemon/test_app_faults.py::test_a_thread_that_raises_ends_the_daemon_with_exit_1_and_says_why",
     "exit {exit_code}, `{retained_status}` retained"),
    ("publish thread raises", "exit 1 naming the thread and cause; retained `offline`",
     "tests/daemon/test_app_faults.py::test_a_thread_that_raises_ends_the_daemon_with_exit_1_and_says_why",
     "exit {exit_code}, `{retained_status}` retained"),
    ("SIGKILL during builds x30", "0 partial engines vouched for by a sidecar; the next build works",
     RELIABILITY + "::test_thirty_builds_killed_at_random_moments_never_leave_a_loadable_partial_engine",
     "{killed} builds killed, {sidecars_checked} sidecars checked, {partial_engines_vouched} partial; next build: "
     "{next_build}"),
    ("corrupted engines x100", "100 % caught before loading, then rebuilt",
     RELIABILITY + "::test_every_corruption_of_a_cached_engine_is_caught", "{caught} of 100 caught; rebuilt: {rebuilt_after}"),
    ("disk full during a build", "the error says \"no space left on device\"",
     "tests/daemon/test_disk_full.py::test_a_build_on_a_full_disk_says_no_space_left_on_device",
     "exit {exit_code}: {message}"),
    ("disk full with a valid cached engine", "the cached engine still serves",
     "tests/daemon/test_disk_full.py::test_a_valid_cached_engine_still_serves_on_a_full_disk",
     "READY: {ready}; detections: {detections}"),
    ("hostile configs", "exit 0 or 2, never a traceback; what is accepted builds the daemon",
     "tests/config/test_schema_fuzz.py", "{accepted} accepted, {refused} refused, {tracebacks} tracebacks"),
    ("hostile command lines", "an exit code, never a traceback", "tests/commands/test_cli.py",
     "{examples} generated command lines, {tracebacks} tracebacks"),
    ("image declaring 30000x30000 pixels", "refused before decoding",
     "tests/test_images.py::test_a_png_declaring_30000_by_30000_is_refused_before_decoding",
     "a {file_bytes}-byte file refused; peak RSS of the whole process {peak_rss_mb} MB"),
    ("soak 90 s", "RSS grows at most 120 MB/h and climbs at most 48 MB after warm-up (a step is not a leak: see "
     "below); fds and threads flat",
     RELIABILITY + "::test_a_long_run_keeps_memory_descriptors_and_threads_flat",
     "{frames_per_s} frames/s; RSS {growth_mb_per_h} MB/h, largest step +{largest_step_mb} MB, climb "
     "{rise_mb} MB ({rss_mb} MB); fds {fds}; threads {threads}"),
    ("soak, daemon with one backlog", "the issue's failure on purpose: a one-time RSS step (the frames queued "
     "once) passes",
     RELIABILITY + "::test_the_soak_passes_a_daemon_whose_rss_steps_once_after_a_backlog",
     "RSS climbed {rise_mb} MB (largest step +{largest_step_mb} MB) and grew {growth_mb_per_h} MB/h: passed; "
     "{frames_per_s} frames/s"),
    ("soak, daemon leaking 64 KB a frame", "the same judgement catches it",
     RELIABILITY + "::test_the_soak_catches_a_daemon_that_leaks_64_kb_a_frame",
     "{growth_mb_per_h} MB/h measured, {leaked_mb_per_h} MB/h leaked ({frames_per_s} frames/s x 64 KB); "
     "caught: {caught}"),
    ("per-device MQTT ACLs", "no device reads or writes another's topics (judged by what is delivered)",
     RELIABILITY + "::test_per_device_acls_keep_each_device_to_its_own_topics",
     "{forged_delivered} forged messages delivered; {foreign_messages_read} foreign messages read; "
     "{own_messages_delivered}+ own delivered"),
    ("generated hostile command payloads (dispatcher)", "each a rejection with a reason; none executed; no exception",
     "tests/remote/test_command_fuzz.py::test_the_fuzzing_is_recorded",
     "{payloads} payloads (hypothesis, tests/hostile_json.py): {rejected} rejected, {executed} executed, "
     "{exceptions} exceptions"),
    ("generated hostile payloads through mosquitto", "no thread dies; detection keeps its rate; memory bounded",
     "tests/remote/test_command_fuzz.py::test_generated_payloads_through_a_real_broker_leave_every_thread_running",
     "{payloads} payloads: {rejected} rejected, {rate_limited} rate-limited, {threads_died} threads died; "
     "{fps_before} -> {fps_during} frames/s; RSS +{rss_growth_mb} MB"),
    ("200 MB publishes on the command and instance topics, MQTT 5 link",
     "the broker drops them for facewatch (Maximum Packet Size 64 KiB); RSS flat; the link stays up",
     "tests/mqtt/test_link_hostile.py::test_200_mb_publishes_on_the_command_and_instance_topics_never_reach_an_mqtt5_link",
     "{publishes} publishes of {payload_mb:.0f} MB: peak RSS +{peak_rss_growth_mb} MB, after +{rss_growth_mb} MB"),
    ("replays under record and clock faults", "0 replays executed",
     "tests/remote/test_replay.py::test_no_replay_runs_under_any_record_or_clock_fault_and_the_count_is_recorded",
     "{replays_executed} replays executed in {cases} cases (record a folder, a FIFO, 10,000 ids from 2096, not "
     "JSON, or sound; clock +150 s and back, -150 s and forward, steady; each also after a restart)"),
]


# Below the table: what the soak judges, and what the 9 MB of issue 19 was. Measured once, by hand, not by
# the run that renders the table; regenerating keeps it.
SOAK_NOTES = """\
## The soak: a step is not a leak

The soak rows judge how fast RSS grows, not how far it moved (`tests/soak.py`). RSS is read ten times a second
and each second's lowest reading kept (what stays, not a frame passing through); the first fifth of the window
is warm-up; the rest is cut into five parts and a least-squares slope fitted to each. The second-lowest slope,
RSS grew at least that fast in four parts of five, must stay within 120 MB/h, and the whole climb within 48
MB. A step lands in one part, a leak in all five. The same judgement passes the healthy daemon and the
backlogged one and catches the leaking one (rows above; the faults are injected by `tests/fault_runner.py`,
none in shipped code). 120 MB/h is 1 KB a frame at 33 frames/s: healthy daemons measured at most 43 MB/h over
30 s windows and 21 MB/h over 90 s ones on a loaded 2-core host, a 64 KB a frame leak 1,470 MB/h at 8
frames/s, 7,600 at 33 and 10,800-13,700 at 57-59. A slower leak than the bound is more than a 90 s window can
tell from steps. The climb cap is twice what the pipeline can hold at once beyond its steady state on the VGA
clip (16 frames and two input tensors, about 22 MB), so a leak in bursts cannot pass as steps.

What the 9 MB of issue 19 was (237.88 to 246.85 MB in the 90 s soak on Python 3.13; measured 2026-12-03 on a
2-core Xeon with AVX-512 VNNI, Python 3.13.0, glibc 2.36, the daemon on the demo clip as fast as it goes): a
one-time step, not growth. The ordered hand-over from the inference threads to the publish thread holds up to
12 results, each with its 640x480 frame (0.88 MiB); when the publish thread falls behind on a loaded host, it
fills. Frames are malloc'd above glibc's first mmap threshold (128 KiB), but glibc raises that threshold to
the size of the first mapped block freed, so from then on frames come from the malloc arenas, which keep freed
memory for reuse rather than hand it back: RSS keeps the high-water mark of frames alive at once. Holding the
publish thread for 2 s filled the hand-over (13 results) and raised RSS from 256.4 to 266.9 MB, where it
stayed; meanwhile malloc's bytes in use went 124.8, 136.3, 124.9 MB and tracemalloc's traced memory (numpy's
frames included) 38.2, 49.6, 38.2 MB: every frame was freed, the arenas kept the room (their free bytes +10.5
MB). Seven more such stalls 15 s apart added 2.1 MB in all: the arenas reuse their room. With
`MALLOC_MMAP_THRESHOLD_=524288` (each frame mapped and unmapped) the same stall raised RSS by 11.5 MB for one
second and it fell back. About ten frames are the issue's 8.97 MB. It is not Python 3.13's: the backlog makes
the same step on 3.6 (10.5-11.3 MB in four runs); 3.13 is where the 90 s soak runs (3.6 runs it for 30 s, 3.8
and 3.10 leave the slow tests out), and the issue's 10-minute 3.11 run stepped 3.6 MB by 70 s, then stayed
flat. Without a backlog, 300 s on 3.13 stayed within 235.2-237.4 MB. The step scales with the frame: about 16
frames of 6 MB at 1080p.
""".splitlines()


def run_tests(figures_path, pytest_args):
    files = sorted({row[2].split("::")[0] for row in ROWS})
    env = dict(os.environ, FACEWATCH_FIGURES=figures_path)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + files + pytest_args
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=REPO_ROOT, env=env)


def load_figures(path):
    figures = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                figures[entry["fault"]] = entry["measured"]
    return figures


def render(figures, status):
    lines = ["# Reliability: faults, what is promised, what was measured", "",
             "Made by `python3 scripts/reliability_report.py` on {} ({}, Python {}, {} cores); pytest exit {}.".format(
                 time.strftime("%Y-%m-%d"), platform.processor() or platform.machine(), platform.python_version(),
                 os.cpu_count(), status),
             "Every row is an automated test, run by `bash .ci/run` too (the slow ones marked `slow`); run one",
             "with `.venv-newest/bin/python -m pytest 'NODE'`. A real mosquitto, real processes and signals,",
             "a real tmpfs, real files; nothing here ran on a Jetson.", "",
             "| fault | expected | measured | test |", "|---|---|---|---|"]
    for fault, expected, node, shape in ROWS:
        measured = figures.get(fault)
        text = shape.format(**measured) if measured else "not measured in this run"
        lines.append("| {} | {} | {} | `{}` |".format(fault, expected, text, node))
    return "\n".join(lines + [""] + SOAK_NOTES) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "docs", "reliability.md"))
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures_path = os.path.join(scratch, "figures.jsonl")
        status = run_tests(figures_path, pytest_args)
        figures = load_figures(figures_path)
    with open(args.out, "w") as f:
        f.write(render(figures, status))
    print("wrote", args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
