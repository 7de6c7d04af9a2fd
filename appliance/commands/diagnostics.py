"""What `facewatch doctor` checks: each check returns Finding(s) with a level (ok, warn, fail), what was
found, and a hint for what to do. A check that cannot run on this host says so as a warning; nothing here
changes the system."""
import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import NamedTuple

OK, WARN, FAIL = "ok", "warn", "fail"
CAMERA_GRACE = 3.0   # seconds beyond camera.open_timeout before an open is called hung

Finding = NamedTuple("Finding", [("check", str), ("level", str), ("detail", str), ("hint", str)])


def finding(check, level, detail, hint=""):
    return Finding(check, level, detail, hint)


def python_version():
    version = platform.python_version()
    level = OK if sys.version_info >= (3, 6) else FAIL
    return [finding("python", level, "{} ({})".format(version, sys.executable), "" if level == OK else
                    "facewatch needs Python 3.6 or newer")]


PACKAGES = (("numpy", "numpy", True), ("opencv", "cv2", True), ("paho-mqtt", "paho.mqtt", True),
            ("psutil", "psutil", True), ("Pillow", "PIL", True), ("onnxruntime", "onnxruntime", False),
            ("tensorrt", "tensorrt", False), ("pycuda", "pycuda", False), ("jetson-stats", "jtop", False))


def package_version(module_name):
    """The module's version, or None when it does not import."""
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a package that is present but broken (a missing library) does not import either
        return None
    for attribute in ("__version__", "VERSION", "version"):
        value = getattr(module, attribute, None)
        if isinstance(value, str):
            return value
    return "present"


def packages(on_jetson):
    found = []
    versions = {}
    for name, module_name, required in PACKAGES:
        version = package_version(module_name)
        versions[name] = version
        if version:
            found.append(finding(name, OK, version))
        elif required:
            found.append(finding(name, FAIL, "missing", "pip install 'facewatch[cpu]' (or JetPack's own package)"))
        elif name == "tensorrt" and on_jetson:
            found.append(finding(name, WARN, "missing: ONNX Runtime on the CPU will be used",
                                 "apt-get install python3-libnvinfer (JetPack), and make the venv see it "
                                 "(--system-site-packages)"))
        elif name == "pycuda" and versions.get("tensorrt"):
            found.append(finding(name, FAIL, "missing: TensorRT needs it for its buffers",
                                 "pip install 'facewatch[jetson]' (needs the CUDA toolkit)"))
        else:
            found.append(finding(name, OK, "not installed (not needed here)"))
    if not versions["onnxruntime"] and not versions["tensorrt"]:
        found.append(finding("backend", FAIL, "neither ONNX Runtime nor TensorRT is installed",
                             "pip install 'facewatch[cpu]'"))
    return found


def jetson_release():
    from appliance.backends.platform_facts import l4t_release
    release = l4t_release()
    if not release:
        return [finding("jetson", OK, "not a Jetson (no /etc/nv_tegra_release)")]
    model = read_text("/proc/device-tree/model").strip("\x00 \n") or "a Jetson"
    return [finding("jetson", OK, "{}, L4T {}".format(model, release))]


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read(4096)
    except OSError:
        return ""


def backend(config):
    from appliance.backends import choose_backend
    from appliance.errors import FacewatchError
    try:
        chosen = choose_backend(config.engine.backend)
        name = chosen.name
        capabilities = chosen.capabilities(load_model())
    except FacewatchError as exc:
        return [finding("backend", FAIL, str(exc), "set engine.backend to one installed here")]
    found = [finding("backend", OK, "{} {}".format(name, chosen.version()))]
    if not chosen.measure_candidates:   # the platform's own flags decide (TensorRT's builder reports them)
        found += [finding("fast int8", OK if capabilities.fast_int8 else WARN,
                          "yes" if capabilities.fast_int8 else "no: {} builds FP16 or FP32".format(name),
                          "" if capabilities.fast_int8 else "INT8 needs a GPU with fast integer math"),
                  finding("fast fp16", OK, "yes" if capabilities.fast_fp16 else "no")]
    return found + [finding("precision", OK, auto_precision(config, name, chosen, capabilities))]


def auto_precision(config, name, chosen, capabilities):
    """What engine.precision = auto chooses here and why: by measuring (no benchmark here: the figures of the
    last measurement in the engine cache), or by the platform's flags."""
    from appliance.backends import AUTO
    from appliance.engine import policy
    candidates = policy.buildable(capabilities)
    configured = "" if config.engine.precision == AUTO else \
        "engine.precision = {}, so auto is not used; ".format(config.engine.precision)
    if chosen.measure_candidates and len(candidates) > 1:
        return configured + "auto measures {} at the first build and keeps the faster; {}".format(
            " against ".join(p.upper() for p in reversed(candidates)), last_measurement(config, name, candidates))
    skipped = ["{}: {}".format(p.upper(), policy.why_not(p, capabilities))
               for p in policy.PRECISIONS[:policy.PRECISIONS.index(candidates[0])]]
    return configured + "auto chooses {}{}".format(candidates[0].upper(), " ({})".format("; ".join(skipped)) if skipped
                                                  else ": the platform has fast {}".format(candidates[0].upper()))


def last_measurement(config, backend_name, candidates):
    """The figures `auto` last measured in this engine cache (its active record, else the engines' own)."""
    from appliance.engine.store import EngineStore, StoreError
    directory = config.engine.cache_dir
    unmeasured = "not measured here yet: the first start (or `facewatch engines build`) measures them"
    try:
        store = EngineStore(directory, read_only=True)
        record, entries = store.active_record(), store.entries()
    except StoreError:
        return unmeasured
    reason = (record or {}).get("choice_reason") or ""
    if reason.startswith("auto: fastest measured here "):
        kept = [e.get("precision") for e in entries if e["name"] == record["engine"]]
        return "the last measurement here ({}), {}{}".format(
            directory, reason[len("auto: fastest measured here "):],
            "; {} was kept".format(str(kept[0]).upper()) if kept and kept[0] else "")
    timed = {}
    for entry in entries:   # newest first
        inputs = entry.get("key_inputs") if isinstance(entry.get("key_inputs"), dict) else {}
        latency = entry.get("latency_ms")
        if inputs.get("backend") == backend_name and isinstance(latency, (int, float)) and latency == latency:
            timed.setdefault(str(entry.get("precision")), latency)
    if not timed:
        return unmeasured
    untimed = [p.upper() for p in candidates if p not in timed]
    return "timed here before ({}): {}{}".format(directory, ", ".join(
        "{} {:.2f} ms".format(precision.upper(), ms) for precision, ms in sorted(timed.items(), key=lambda i: i[1])),
        "; {} not timed yet".format(", ".join(untimed)) if untimed else "")


def load_model():
    from appliance.manifest import load_model as load
    return load()


def gpu():
    if package_version("pycuda") is None:
        return [finding("gpu", OK, "no pycuda: no CUDA device used")]
    try:
        import pycuda.driver as cuda
        cuda.init()
        device = cuda.Device(0)
        return [finding("gpu", OK, "{} (compute capability {}.{})".format(device.name(), *device.compute_capability()))]
    except Exception as exc:  # pycuda raises its own kinds for a missing driver or device
        return [finding("gpu", FAIL, "CUDA does not start: {}".format(exc),
                        "check the NVIDIA driver; the service user needs the video group")]


def opencv(config):
    try:
        import cv2
    except ImportError:
        return []
    info = cv2.getBuildInformation()

    def built_with(name):
        match = re.search(r"{}:\s*(\w+)".format(name), info)
        return bool(match) and match.group(1).upper() == "YES"
    from appliance.camera.sources import parse_source
    kind = safe_kind(parse_source, config.camera.source)
    gstreamer, ffmpeg = built_with("GStreamer"), built_with("FFMPEG")
    found = [finding("opencv", OK, "{} (GStreamer {}, FFmpeg {})".format(
        cv2.__version__, "yes" if gstreamer else "no", "yes" if ffmpeg else "no"))]
    if kind == "gstreamer" and not gstreamer:
        found.append(finding("gstreamer", FAIL, "camera.source needs GStreamer, which this OpenCV lacks",
                             "on a Jetson use JetPack's OpenCV (apt: nvidia-opencv) and pip uninstall "
                             "opencv-python-headless"))
    if kind == "url" and not ffmpeg:
        found.append(finding("ffmpeg", FAIL, "camera.source is a URL, and this OpenCV has no FFmpeg",
                             "install an OpenCV built with FFmpeg"))
    return found


def safe_kind(parse, source):
    try:
        return parse(source).kind
    except ValueError:
        return "invalid"


def camera(config):
    """Open the configured camera and read one frame, within camera.open_timeout (+ a grace)."""
    from appliance.camera.capture import Camera, CameraError, open_capture
    outcome = {}

    def attempt():
        try:
            source = Camera(config.camera, threading.Event())
            capture = open_capture(source.spec, config.camera)
            try:
                ok, image = capture.read()
            finally:
                capture.release()
            outcome["result"] = (OK, "{}x{} from {}".format(image.shape[1], image.shape[0], source.name)) if ok \
                else (FAIL, "{} opened but gave no frame".format(source.name))
        except CameraError as exc:
            outcome["result"] = (FAIL, str(exc))
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(config.camera.open_timeout + CAMERA_GRACE)
    level, detail = outcome.get("result", (FAIL, "no answer within {:.0f} s".format(
        config.camera.open_timeout + CAMERA_GRACE)))
    return [finding("camera", level, detail, "" if level == OK else
                    "check camera.source (ls /dev/video*, the URL in a player, the file's path)")]


def broker(config):
    """Connect with the configured credentials and TLS, as the daemon would; then what bounds the size of
    the messages the broker may hand facewatch (packet_size)."""
    from appliance.config import schema as configuration
    from appliance.errors import FacewatchError
    from appliance.remote.client import Controller

    mqtt = config.mqtt
    try:
        password = configuration.secret(mqtt.password_file, "mqtt.password_file", "mqtt_password")
        probe = Controller(mqtt.host, mqtt.port, mqtt.prefix, mqtt.protocol, mqtt.username, password, mqtt.tls_ca,
                      mqtt.tls_cert, mqtt.tls_key, mqtt.keepalive)
        probe.close()
    except FacewatchError as exc:
        return [finding("broker", FAIL, str(exc), "check mqtt.host, mqtt.port, the credentials and TLS settings")] \
            + packet_size(config, None, connected=False)
    return [finding("broker", OK, "{}:{} accepted the connection{}".format(
        mqtt.host, mqtt.port, " as " + mqtt.username if mqtt.username else ""))] \
        + packet_size(config, probe.connack_properties)


MOSQUITTO_DEFAULT_PACKET = "256 MB"
# A bound on the JPEG of a snapshot: a 4:3 frame snapshot.max_width wide at 2 bytes a pixel (noise at quality
# 100 takes 1.98; a camera's frame at quality 80 about 0.15: 46 KB at 640x480).
SNAPSHOT_BYTES_PER_PIXEL = 2
PACKET_HEADROOM = 4096         # a snapshot's topic and the packet's headers
SMALLEST_ADVISED_PACKET = 64 * 1024


def largest_snapshot(config):
    width = config.snapshot.max_width
    return width * (width * 3 // 4) * SNAPSHOT_BYTES_PER_PIXEL


def advised_packet_limit(config):
    """The broker's max_packet_size to advise: a power of two that takes the largest snapshot facewatch may
    publish (commands are at most 4 KiB), far below mosquitto's default: 1 MiB at snapshot.max_width 640."""
    limit = SMALLEST_ADVISED_PACKET
    while limit < largest_snapshot(config) + PACKET_HEADROOM:
        limit *= 2
    return limit


def packet_size(config, connack_properties, connected=True):
    """What bounds the messages the broker hands facewatch. With MQTT 5 facewatch states its own Maximum
    Packet Size on CONNECT, and the broker's own limit comes back in CONNACK (too small a one refuses
    facewatch's snapshots); MQTT 3.1.1 gives a client no way to refuse a large message, so only the broker's
    configuration can: a warning, as doctor cannot see it."""
    advice = "max_packet_size {} in mosquitto.conf (room for a snapshot at snapshot.max_width {})".format(
        advised_packet_limit(config), config.snapshot.max_width)
    if config.mqtt.protocol != "5":
        return [finding("packet size", WARN, "MQTT 3.1.1 gives facewatch no way to refuse large messages: the "
                        "broker hands it whatever anyone may publish on its topics (mosquitto's default allows {}, "
                        "enough to exhaust a 4 GB Jetson Nano's memory)".format(MOSQUITTO_DEFAULT_PACKET),
                        "configure the broker to refuse large messages (mosquitto: {}), or use mqtt.protocol = "
                        "\"5\"".format(advice))]
    if not connected:
        return []
    limit = getattr(connack_properties, "MaximumPacketSize", None)
    if not isinstance(limit, int) or isinstance(limit, bool):
        return [finding("packet size", OK, "MQTT 5: facewatch states its Maximum Packet Size on CONNECT, so the "
                        "broker hands it no larger message; the broker itself states no limit (mosquitto's default "
                        "accepts {} from any client)".format(MOSQUITTO_DEFAULT_PACKET))]
    if limit < largest_snapshot(config) + PACKET_HEADROOM:
        return [finding("packet size", WARN, "the broker accepts packets of at most {} bytes; a snapshot at "
                        "snapshot.max_width {} may take up to {} bytes, which it would refuse".format(
                            limit, config.snapshot.max_width, largest_snapshot(config)),
                        "mosquitto: " + advice + ", or lower snapshot.max_width")]
    return [finding("packet size", OK, "MQTT 5: facewatch states its Maximum Packet Size on CONNECT; the broker "
                    "accepts packets of at most {} bytes".format(limit))]


def time_sync(run=None):
    """Whether the system clock is synchronised (timedatectl: NTPSynchronized, systemd 239+; else the
    `timedatectl status` lines of older systemd, 237 on JetPack 4). `run(argv)` -> (exit status, stdout) or
    None when the command cannot run; the default runs it with a timeout."""
    from appliance.remote.envelope import MAX_CLOCK_SKEW
    run = run or run_command
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    synchronised, how = clock_synchronised(run)
    why = ("signed commands are refused when this device's clock and the sender's differ by more than {:.0f} s"
           .format(MAX_CLOCK_SKEW))
    if synchronised is None:
        return [finding("time sync", WARN, "unknown: {}; this device's clock says {}".format(how, now),
                        why + ": check the clock (date -u) and that NTP runs (timedatectl, chrony or ntpd)")]
    if synchronised:
        return [finding("time sync", OK, "synchronised ({}); {}".format(how, now))]
    return [finding("time sync", WARN, "not synchronised ({}); this device's clock says {}".format(how, now),
                    why + ": enable network time (timedatectl set-ntp true) with a time server this device "
                    "reaches, or set the clock (timedatectl set-time)")]


CLOCK_STATUS_LINE = re.compile(r"^\s*(System clock synchronized|NTP synchronized):\s*(yes|no)\s*$",
                               re.MULTILINE | re.IGNORECASE)


def clock_synchronised(run):
    """(True, False or None when unknown, how that was found or why not)."""
    shown = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if shown is not None and shown[0] == 0 and shown[1].strip() in ("yes", "no"):
        return shown[1].strip() == "yes", "timedatectl: NTPSynchronized={}".format(shown[1].strip())
    status = run(["timedatectl", "status"])
    if status is None:
        return None, "timedatectl is not installed or did not answer"
    match = CLOCK_STATUS_LINE.search(status[1]) if status[0] == 0 else None
    if not match:
        return None, "timedatectl could not tell (exit status {})".format(status[0])
    return match.group(2).lower() == "yes", "timedatectl: {}: {}".format(match.group(1), match.group(2).lower())


def run_command(argv, timeout=5.0):
    """(exit status, stdout) of a command; None when it is not installed, cannot run or times out."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.returncode, done.stdout


def engine_cache(config):
    from appliance import files
    from appliance.engine.store import EngineStore, StoreError
    directory = config.engine.cache_dir
    if not os.path.isdir(directory):
        return [finding("engine cache", OK, "{} does not exist yet: the first start builds an engine".format(directory))]
    try:
        entries = EngineStore(directory, read_only=True).entries()
    except StoreError as exc:
        return [finding("engine cache", FAIL, str(exc), "")]
    broken = [e["name"] for e in entries if "broken" in e]
    free = files.free_bytes(directory)
    found = [finding("engine cache", OK if os.access(directory, os.W_OK) else WARN, "{}: {} engine(s){}{}".format(
        directory, len(entries) - len(broken), ", {} broken (rebuilt when needed)".format(len(broken)) if broken else "",
        "" if os.access(directory, os.W_OK) else ", not writable by this user"))]
    if free is not None and free < 64 << 20:
        found.append(finding("disk", FAIL, "{} free where engines are kept".format(files.human_bytes(free)),
                             "free some space: a build needs tens of megabytes"))
    elif free is not None:
        found.append(finding("disk", OK, "{} free where engines are kept".format(files.human_bytes(free))))
    return found


def systemd_unit():
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return [finding("systemd", OK, "not running under systemd here")]
    state = run_quietly(["systemctl", "is-active", "facewatch"])
    enabled = run_quietly(["systemctl", "is-enabled", "facewatch"])
    level = OK if state == "active" else (FAIL if state == "failed" else WARN)
    return [finding("systemd", level, "facewatch.service {}, {}".format(state or "unknown", enabled or "not installed"),
                    "" if level == OK else "journalctl -u facewatch -n 50 says why")]


def run_quietly(command):
    try:
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
