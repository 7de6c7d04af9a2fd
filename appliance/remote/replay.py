"""Command ids already seen, kept on disk so a replay is refused even after a restart.

A command is accepted only within MAX_CLOCK_SKEW of its `ts`, so an id need only be remembered for
twice that window; older ones are forgotten. The file is also capped at MAX_IDS entries (the command
rate limit keeps the window far below it). Written atomically after every accepted id.
"""
import json
import logging
import os
import threading

from appliance import files
from appliance.remote.envelope import MAX_CLOCK_SKEW

log = logging.getLogger(__name__)

FILE_NAME = "commands-seen.json"
MAX_IDS = 10000
MAX_FILE_BYTES = 4 << 20


class ReplayGuard:
    def __init__(self, directory):
        self.path = os.path.join(directory, FILE_NAME)
        self._lock = threading.Lock()
        self.save_error = ""
        self._seen = self._load()

    def _load(self):
        """{id: ts} from the file; an unreadable or damaged file is reported and starts empty."""
        if not os.path.lexists(self.path):
            return {}
        try:
            document = json.loads(files.read_regular_file(self.path, MAX_FILE_BYTES).decode("utf-8"))
            seen = {str(k): float(v) for k, v in document["seen"].items()}
        except (files.FileRefused, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("commands: the replay record %s is unusable (%s); starting a new one", self.path, exc)
            return {}
        return seen

    def admit(self, command_id, ts, now):
        """True if `command_id` was not seen before (and remember it); False for a replay."""
        with self._lock:
            self._forget_older_than(now - 2 * MAX_CLOCK_SKEW)
            if command_id in self._seen:
                return False
            self._seen[command_id] = float(ts)
            if len(self._seen) > MAX_IDS:
                for old in sorted(self._seen, key=self._seen.get)[:len(self._seen) - MAX_IDS]:
                    del self._seen[old]
            self._save()
            return True

    def _forget_older_than(self, limit):
        for old in [k for k, ts in self._seen.items() if ts < limit]:
            del self._seen[old]

    def _save(self):
        """Write the record; a failure is kept in save_error (telemetry) and logged once."""
        try:
            files.atomic_write_bytes(self.path, json.dumps({"v": 1, "seen": self._seen}).encode("utf-8"))
            self.save_error = ""
        except OSError as exc:
            # The id is still refused while facewatch runs; only a restart could then forget it.
            error = "cannot save the replay record: {}".format(files.os_reason(self.path, exc))
            if error != self.save_error:
                log.warning("commands: %s", error)
            self.save_error = error
