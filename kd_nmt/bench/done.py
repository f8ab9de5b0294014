"""``kd-nmt bench --skip-done``: rerunning a finished bench is a no-op, a changed one is redone.

A recipe reruns every step and relies on each step knowing whether its output is current. "OUT
has a bench.md" is not enough: a grid that gains a method (METHODS="baseline seq_kd" then
"baseline word_kd seq_kd") would keep the old table without the new student, and a student that
trained on (STUDENT_UPDATES raised) would keep the scores of its old checkpoint. A bench is done
when OUT holds a whole bench (bench.md is published last, kd_nmt.common.atomic.publish_group),
its bench.json records this very command, and no checkpoint it scored changed since.
"""
import json
import os

FLAG = "--skip-done"


def recorded_command(argv):
    """The command a bench records in bench.json: its arguments without ``--skip-done`` (which
    says how to run it, not what it computes, so a bench run without it is still the same)."""
    return ["kd-nmt", "bench", *(a for a in argv if a != FLAG)]


def finished(out, command, checkpoints):
    """Why OUT is current for COMMAND, or None when it must be (re)done."""
    report_path = os.path.join(out, "bench.json")
    if not os.path.isfile(os.path.join(out, "bench.md")):
        return None
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return None
    if report.get("command") != command:
        return None
    written = os.path.getmtime(report_path)
    if any(os.path.getmtime(path) > written for path in checkpoints if os.path.exists(path)):
        return None
    return "the same command, no checkpoint changed since"
