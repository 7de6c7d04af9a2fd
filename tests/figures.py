"""Measured figures for docs/reliability.md: a test records what it measured; with $FACEWATCH_FIGURES
set (scripts/reliability_report.py sets it), each record is appended there as one JSON line."""
import json
import os
import time


def record(fault, **measured):
    path = os.environ.get("FACEWATCH_FIGURES")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"fault": fault, "at": round(time.time()), "measured": measured}, sort_keys=True) + "\n")
