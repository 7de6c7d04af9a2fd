"""Command ids already seen, kept on disk so that a replay is refused, also after a restart; fail closed.

A command is accepted only within MAX_CLOCK_SKEW of the device's clock, so an id must be remembered while
its `ts` could still be fresh under ANY clock this device has had, not only under today's: a clock stepped
back (NTP correcting a Jetson that booted without network time, a person with `date -s`) would make an
old command fresh again. So the guard tracks the wall clock against the monotonic one: `lead` is how far
the clock now is ahead of the earliest clock seen (this boot: a restart of facewatch within one boot
carries it exactly through the kernel's boot id and monotonic clock). An id is forgotten once even the
earliest clock is 2 x MAX_CLOCK_SKEW past its ts.

Fail closed, each case said in `problem()` (telemetry `commands.replay_record_error`, STATUS=):
- an id whose record cannot be written (a folder, a FIFO, a read-only or full file system) is refused:
  a restart would forget it;
- a record that cannot be read is reported, and for 2 x MAX_CLOCK_SKEW after start every command is
  refused (an id it held might still be fresh);
- entries dated after every clock the record says the device had, entries that are not an id and a
  time, or more than MAX_IDS of them: a damaged record, reported; the plausible ones are kept;
- a record full of ids that may all still be fresh refuses new commands instead of forgetting any.
"""
import json
import logging
import os
import threading
import time

from appliance import files, untrusted
from appliance.remote.envelope import MAX_CLOCK_SKEW, MAX_TS, Rejected, utc

log = logging.getLogger(__name__)

FILE_NAME = "commands-seen.json"
RECORD_VERSION = 2
MAX_IDS = 10000
MAX_FILE_BYTES = 4 << 20
KEEP = 2 * MAX_CLOCK_SKEW
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def read_boot_id(path=BOOT_ID):
    """This boot's id (Linux), or None: a monotonic clock reading is comparable only within one boot."""
    try:
        return files.read_text_file(path, 64).strip() or None
    except files.FileRefused:
        return None


class ReplayGuard:
    def __init__(self, directory, now=None, monotonic=time.monotonic, boot_id=None):
        """now: the wall clock at start (time.time() when None); boot_id: read_boot_id() when None."""
        self.path = os.path.join(directory, FILE_NAME)
        self._monotonic = monotonic
        self._boot_id = read_boot_id() if boot_id is None else boot_id
        self._lock = threading.Lock()
        self.save_error = ""
        self.record_error = ""
        self.full_error = ""
        self._quarantine_until = None       # monotonic
        now = time.time() if now is None else now
        self._offset_min = now - monotonic()  # the earliest clock seen, as wall - monotonic
        self._clock_max = now
        self._seen = self._load(now)

    # --- reading the record ----------------------------------------------------------------------------

    def _load(self, now):
        if not os.path.lexists(self.path):
            return {}
        try:
            document = untrusted.expect_object(
                untrusted.read_json_file(self.path, MAX_FILE_BYTES, "the replay record", max_depth=3))
            seen = untrusted.expect_object(document.get("seen"), "its `seen`")
        except untrusted.Refused as exc:
            self._quarantine_until = self._monotonic() + KEEP
            self._damaged("{} is unusable ({}); every command is refused until {} (2 min), when no id it could "
                          "have held is fresh any more".format(self.path, exc, utc(now + KEEP)))
            return {}
        self._restore_clocks(document, now)
        return self._plausible(seen)

    def _restore_clocks(self, document, now):
        """The earliest and latest clocks of earlier runs, where the record says them and they still apply."""
        clock_max = document.get("clock_max")
        if isinstance(clock_max, (int, float)) and not isinstance(clock_max, bool) and 0 <= clock_max <= MAX_TS:
            self._clock_max = max(self._clock_max, float(clock_max))
        offset_min = document.get("offset_min")
        same_boot = self._boot_id is not None and document.get("boot_id") == self._boot_id
        if same_boot and isinstance(offset_min, (int, float)) and not isinstance(offset_min, bool) and \
                abs(offset_min) <= MAX_TS:
            self._offset_min = min(self._offset_min, float(offset_min))

    def _plausible(self, seen):
        """The entries that are an id and a time this device could have accepted; the rest reported."""
        kept, malformed, future = {}, 0, []
        latest = self._clock_max + MAX_CLOCK_SKEW
        for command_id, ts in seen.items():
            if not _is_entry(command_id, ts):
                malformed += 1
            elif ts > latest:
                future.append(ts)
            else:
                kept[command_id] = float(ts)
        problems = []
        if malformed:
            problems.append("{} entries that are not an id and a time".format(malformed))
        if future:
            problems.append("{} ids dated up to {}, after any clock this device has had (latest {})".format(
                len(future), utc(max(future)), utc(self._clock_max)))
        if len(kept) > MAX_IDS:
            problems.append("{} ids, more than its bound of {} (the newest are kept)".format(len(kept), MAX_IDS))
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[-MAX_IDS:])
        if problems:
            self._damaged("{} is damaged: {}; those are ignored and replay protection goes on".format(
                self.path, "; ".join(problems)))
        return kept

    def _damaged(self, text):
        self.record_error = "the replay record " + text
        log.warning("commands: %s", self.record_error)

    # --- admitting ------------------------------------------------------------------------------------

    def admit(self, command_id, ts, now):
        """Remember `command_id` (durably) or raise Rejected: a replay, a record that cannot be written, a
        full record, or a record that could not be read less than 2 min ago."""
        with self._lock:
            earliest = self._observe(now)
            if self._quarantine_until is not None:
                if self._monotonic() < self._quarantine_until:
                    raise Rejected("refused: {}".format(self.record_error))
                self._quarantine_until = None
            self._forget_older_than(earliest - KEEP)
            if command_id in self._seen:
                raise Rejected("replayed id: a command with this id was already received")
            if len(self._seen) >= MAX_IDS:
                self.full_error = (
                    "the replay record is full: {} ids that may still be fresh under a clock this device has had (its "
                    "clock is {:.0f} s ahead of the earliest one; the latest id is dated {}); commands are refused until "
                    "they expire. If this device's clock never read that date, the record is damaged: remove {}".format(
                        len(self._seen), now - earliest, utc(max(self._seen.values())), self.path))
                raise Rejected(self.full_error)
            self.full_error = ""
            self._seen[command_id] = float(ts)
            self._save(now)

    def _observe(self, now):
        """Track the clocks; returns the earliest clock's reading now."""
        offset = now - self._monotonic()
        self._offset_min = min(self._offset_min, offset)
        self._clock_max = max(self._clock_max, now)
        return now - (offset - self._offset_min)

    def _forget_older_than(self, limit):
        for old in [k for k, ts in self._seen.items() if ts < limit]:
            del self._seen[old]

    def _save(self, now):
        """Write the record; if that fails, the command is refused (the id stays refused while running)."""
        document = {"v": RECORD_VERSION, "seen": self._seen, "saved_at": now, "clock_max": self._clock_max,
                    "offset_min": self._offset_min, "boot_id": self._boot_id}
        try:
            files.atomic_write_bytes(self.path, json.dumps(document).encode("utf-8"))
        except OSError as exc:
            error = "cannot save the replay record: {}; commands are refused until it can be saved (an id not " \
                    "on disk could be replayed after a restart)".format(files.os_reason(self.path, exc))
            if error != self.save_error:
                log.error("commands: %s", error)
            self.save_error = error
            raise Rejected(error)
        self.save_error = ""

    def problem(self):
        """What is wrong with replay protection, in words, or ''."""
        return self.save_error or self.full_error or self.record_error


def _is_entry(command_id, ts):
    return isinstance(command_id, str) and 0 < len(command_id) <= 128 and command_id.isprintable() and \
        isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 <= ts <= MAX_TS
