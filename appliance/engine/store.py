"""Engine files on disk: written atomically, each with a JSON sidecar; never loaded unless it matches.

Write: temp file -> fsync -> rename -> fsync dir, engine first, sidecar last. The sidecar is the commit
record: an engine without one, or whose size/sha256/key inputs differ from it, is not loaded.
"""
import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import tempfile

from appliance.errors import FacewatchError
from appliance.manifest import file_sha256

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
ACTIVE_NAME = "active.json"
LOCK_NAME = ".lock"


class StoreError(FacewatchError):
    pass


class EngineRejected(Exception):
    """A cached engine that must not be loaded; the message says why."""


def fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=os.path.basename(path) + TEMP_MARK, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(directory)


def atomic_install(temp_path, path):
    """Move a finished temp file (same folder) into place durably."""
    with open(temp_path, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temp_path, path)
    fsync_directory(os.path.dirname(path))


class EngineStore:
    def __init__(self, directory):
        self.directory = directory
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the engine cache {}: {}; set engine.cache_dir or --cache-dir to a "
                             "writable folder".format(directory, exc.strerror or exc))
        if not os.access(directory, os.W_OK):
            raise StoreError("the engine cache {} is not writable; set engine.cache_dir or --cache-dir".format(directory))

    @contextlib.contextmanager
    def locked(self):
        """One builder at a time per cache (a daemon and `facewatch engines build` may race)."""
        with open(os.path.join(self.directory, LOCK_NAME), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove_stale_temps(self):
        """Temp files left by a build that died; call under locked()."""
        removed = []
        for path in glob.glob(os.path.join(self.directory, "*" + TEMP_MARK + "*")):
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(path)
        if removed:
            log.info("engine cache: removed %d stale temp file(s) from an interrupted build", len(removed))
        return removed

    def temp_path(self, name):
        fd, path = tempfile.mkstemp(prefix=name + ENGINE_SUFFIX + TEMP_MARK, dir=self.directory)
        os.close(fd)
        return path

    def engine_path(self, name):
        return os.path.join(self.directory, name + ENGINE_SUFFIX)

    def sidecar_path(self, name):
        return os.path.join(self.directory, name + SIDECAR_SUFFIX)

    def install(self, name, built_temp_path, record):
        """Install a built engine and then its sidecar; returns the sidecar written."""
        engine = self.engine_path(name)
        sidecar = dict(record, engine=os.path.basename(engine), size=os.path.getsize(built_temp_path),
                       sha256=file_sha256(built_temp_path))
        atomic_install(built_temp_path, engine)
        atomic_write_bytes(self.sidecar_path(name), json.dumps(sidecar, indent=2).encode("utf-8"))
        return sidecar

    def verified(self, name, inputs):
        """The sidecar of a cached engine that may be loaded, or EngineRejected(reason)."""
        sidecar_path, engine = self.sidecar_path(name), self.engine_path(name)
        if not os.path.exists(sidecar_path):
            raise EngineRejected("no engine cached for this key" if not os.path.exists(engine)
                                 else "engine file without a sidecar (an interrupted build)")
        try:
            with open(sidecar_path, "rb") as f:
                sidecar = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineRejected("unreadable sidecar: {}".format(exc))
        if sidecar.get("key_inputs") != json.loads(json.dumps(inputs)):
            raise EngineRejected("sidecar key inputs differ from this device's")
        try:
            size = os.path.getsize(engine)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise EngineRejected("engine file missing")
            raise
        if size != sidecar.get("size"):
            raise EngineRejected("engine is {} bytes, sidecar says {} (truncated?)".format(size, sidecar.get("size")))
        digest = file_sha256(engine)
        if digest != sidecar.get("sha256"):
            raise EngineRejected("engine sha256 {}… differs from the sidecar's {}… (corrupted)".format(
                digest[:12], str(sidecar.get("sha256"))[:12]))
        return sidecar

    def discard(self, name):
        for path in (self.sidecar_path(name), self.engine_path(name)):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def set_active(self, name):
        atomic_write_bytes(os.path.join(self.directory, ACTIVE_NAME), json.dumps({"engine": name}).encode("utf-8"))

    def active(self):
        try:
            with open(os.path.join(self.directory, ACTIVE_NAME)) as f:
                return json.load(f).get("engine")
        except (OSError, ValueError):
            return None

    def entries(self):
        """Every sidecar in the cache, newest build first."""
        found = []
        for path in glob.glob(os.path.join(self.directory, "*" + SIDECAR_SUFFIX)):
            if os.path.basename(path) == ACTIVE_NAME or TEMP_MARK in path:
                continue
            try:
                with open(path) as f:
                    sidecar = json.load(f)
            except (OSError, ValueError):
                continue
            sidecar["name"] = os.path.basename(path)[:-len(SIDECAR_SUFFIX)]
            found.append(sidecar)
        return sorted(found, key=lambda s: s.get("built_at", 0), reverse=True)
