"""Engine files on disk: written atomically, each with a JSON sidecar; never loaded unless it matches.

Write: old sidecar removed -> engine temp file -> fsync -> rename -> fsync dir -> sidecar. The sidecar is
the commit record: an engine without one, or whose size/sha256/key inputs differ from it, is not loaded.
Whatever else is found in the cache (a sidecar that is not a JSON object, a folder where a file belongs,
an active.json of another shape) is treated as broken and replaced, never a traceback.
"""
import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
import time

from appliance import files, untrusted
from appliance.errors import Cancelled, FacewatchError

log = logging.getLogger(__name__)

TEMP_MARK = files.TEMP_MARK
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
ACTIVE_NAME = "active.json"
LOCK_NAME = ".lock"
MAX_SIDECAR_BYTES = 1 << 20
MAX_SIDECAR_DEPTH = 8
LOCK_POLL = 0.5


class StoreError(FacewatchError):
    pass


class EngineRejected(Exception):
    """A cached engine that must not be loaded; the message says why."""


def remove_path(path):
    """Remove a file, link or folder at `path` if there is one."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def read_json_object(path):
    """The JSON object in regular file `path`; EngineRejected saying why not."""
    try:
        data = files.read_regular_file(path, MAX_SIDECAR_BYTES)
    except files.FileRefused as exc:
        raise EngineRejected("unreadable: {}".format(exc))
    try:
        return untrusted.expect_object(untrusted.load_json(data, MAX_SIDECAR_BYTES, "the record", MAX_SIDECAR_DEPTH),
                                       "the record")
    except untrusted.Refused as exc:
        raise EngineRejected("not valid: {}".format(exc))


class EngineStore:
    def __init__(self, directory, read_only=False):
        """The cache in `directory`, created if missing; read_only: only look (nothing created or required)."""
        self.directory = directory
        if read_only:
            if not os.path.isdir(directory):
                raise StoreError("there is no engine cache at {}".format(directory))
            return
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the engine cache {}: {}; set engine.cache_dir or --cache-dir to a "
                             "writable folder".format(directory, exc.strerror or exc))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise StoreError("the engine cache {} is not a writable folder; set engine.cache_dir or "
                             "--cache-dir".format(directory))

    def _names(self):
        """The names in the cache folder, taken literally (the folder's own name may hold *, ? or [)."""
        try:
            return sorted(os.listdir(self.directory))
        except OSError as exc:
            raise StoreError("cannot list the engine cache: {}".format(files.os_reason(self.directory, exc)))

    @contextlib.contextmanager
    def locked(self, cancel=None, waiting=None):
        """One builder at a time per cache (a daemon and `facewatch engines build` may race). While another
        process holds the lock, waiting(seconds, holder) is called every LOCK_POLL; setting `cancel` ends the
        wait with Cancelled. The holder writes its PID into the lock file, so the waiter can name it."""
        path = os.path.join(self.directory, LOCK_NAME)
        if os.path.lexists(path) and not os.path.isfile(path):
            remove_path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise StoreError("cannot lock the engine cache: {}".format(files.os_reason(path, exc)))
        try:
            self._acquire(fd, cancel, waiting)
            try:
                self._sign(fd)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd, cancel, waiting):
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            if waiting:
                waiting(time.monotonic() - started, holder)
            if cancel is not None and cancel.wait(LOCK_POLL):
                raise Cancelled("stopped while waiting for the engine cache, which process {} holds".format(holder))
            if cancel is None:
                time.sleep(LOCK_POLL)

    @staticmethod
    def _sign(fd):
        """Our PID in the lock file, for a waiter to name us; on a full disk it stays unsaid ("?")."""
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        except OSError:
            pass

    def remove_stale_temps(self):
        """Temp files left by a build that died; call under locked()."""
        removed = []
        for name in self._names():
            if TEMP_MARK in name:
                path = os.path.join(self.directory, name)
                remove_path(path)
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
        """Install a built engine and then its sidecar; returns the sidecar written.

        The old sidecar goes first, so no moment exists where a sidecar describes another engine file.
        """
        engine = self.engine_path(name)
        sidecar = dict(record, engine=os.path.basename(engine), size=os.path.getsize(built_temp_path),
                       sha256=files.file_sha256(built_temp_path))
        remove_path(self.sidecar_path(name))
        files.fsync_directory(self.directory)
        if os.path.isdir(engine):
            remove_path(engine)
        files.atomic_install(built_temp_path, engine)
        files.atomic_write_bytes(self.sidecar_path(name), json.dumps(sidecar, indent=2).encode("utf-8"))
        return sidecar

    def verified(self, name, inputs):
        """The sidecar of a cached engine that may be loaded, or EngineRejected(reason)."""
        sidecar_path, engine = self.sidecar_path(name), self.engine_path(name)
        if not os.path.lexists(sidecar_path):
            raise EngineRejected("no engine cached for this key" if not os.path.lexists(engine)
                                 else "engine file without a sidecar (an interrupted build)")
        try:
            sidecar = read_json_object(sidecar_path)
        except EngineRejected as exc:
            raise EngineRejected("sidecar {}".format(exc))
        if sidecar.get("key_inputs") != json.loads(json.dumps(inputs)):
            raise EngineRejected("sidecar key inputs differ from this device's")
        try:
            info = os.stat(engine)
        except OSError:
            raise EngineRejected("engine file missing")
        if not stat.S_ISREG(info.st_mode):
            raise EngineRejected("the engine path is not a regular file")
        if info.st_size != sidecar.get("size"):
            raise EngineRejected("engine is {} bytes, sidecar says {!r} (truncated?)".format(
                info.st_size, sidecar.get("size")))
        digest = files.file_sha256(engine)
        if digest != sidecar.get("sha256"):
            raise EngineRejected("engine sha256 {}… differs from the sidecar's {}… (corrupted)".format(
                digest[:12], str(sidecar.get("sha256"))[:12]))
        return sidecar

    def annotate(self, name, fields):
        """Add measured figures to the sidecar of an installed engine (atomically); OSError if the disk refuses.
        A sidecar that no longer reads is left alone: the next check rejects it."""
        try:
            sidecar = read_json_object(self.sidecar_path(name))
        except EngineRejected:
            return
        sidecar.update(fields)
        files.atomic_write_bytes(self.sidecar_path(name), json.dumps(sidecar, indent=2).encode("utf-8"))

    def discard(self, name):
        for path in (self.sidecar_path(name), self.engine_path(name)):
            remove_path(path)

    def set_active(self, name, choice_reason=None):
        """Record `name` as the engine in use, and why it was chosen; False (and logged) if the disk refuses.

        active.json only informs `engines list`: a full disk must not stop a valid engine from serving.
        """
        record = {"engine": name, "choice_reason": choice_reason}
        if self.active_record() == record:
            return True
        path = os.path.join(self.directory, ACTIVE_NAME)
        try:
            if os.path.isdir(path):
                remove_path(path)
            files.atomic_write_bytes(path, json.dumps(record).encode("utf-8"))
        except OSError as exc:
            log.warning("engine cache: cannot record %s as active: %s", name, files.os_reason(path, exc))
            return False
        return True

    def active_record(self):
        """{"engine": name, "choice_reason": text or None} of the engine in use, or None."""
        try:
            record = read_json_object(os.path.join(self.directory, ACTIVE_NAME))
        except EngineRejected:
            return None
        engine, reason = record.get("engine"), record.get("choice_reason")
        if not isinstance(engine, str):
            return None
        return {"engine": engine, "choice_reason": reason if isinstance(reason, str) else None}

    def active(self):
        record = self.active_record()
        return record["engine"] if record else None

    def entries(self):
        """Every sidecar in the cache, newest build first; one that cannot be read has `broken` set."""
        found = []
        for file_name in self._names():
            if not file_name.endswith(SIDECAR_SUFFIX) or file_name == ACTIVE_NAME or TEMP_MARK in file_name:
                continue
            name = file_name[:-len(SIDECAR_SUFFIX)]
            try:
                sidecar = read_json_object(os.path.join(self.directory, file_name))
                if not os.path.isfile(self.engine_path(name)):
                    sidecar = {"broken": "its engine file is missing or not a regular file"}
            except EngineRejected as exc:
                sidecar = {"broken": "sidecar {}".format(exc)}
            sidecar["name"] = name
            found.append(sidecar)
        return sorted(found, key=built_at, reverse=True)


def built_at(sidecar):
    value = sidecar.get("built_at")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
