"""scripts/check_knobs.py: a mistyped recipe knob stops the recipe with one line."""
import os
import subprocess
import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))

import check_knobs  # noqa: E402


def test_close_but_unknown_names_are_flagged_by_hand():
    known = {"STUDENT_UPDATES", "SEEDS", "SEED", "WORK"}
    env = {"STUDENT_UPDATE": "300", "SEEDS": "1 2", "PATH": "/bin", "HOME": "/root", "WROK": "x", "lower": "1"}
    assert check_knobs.mistyped(env, known) == [("STUDENT_UPDATE", "STUDENT_UPDATES")]
    assert "STUDENT_UPDATES" in check_knobs.known_knobs() and "SEEDS" in check_knobs.known_knobs()


def test_a_recipe_with_a_mistyped_knob_stops_in_one_line():
    env = dict(os.environ, STUDENT_UPDATE="300", PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(REPO / "recipes" / "kim_rush.sh")], capture_output=True, text=True,
                          env=env, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "recipe: error: unknown knob STUDENT_UPDATE='300' (did you mean STUDENT_UPDATES?); the recipes read: ")


def test_the_environment_of_this_test_run_passes():
    assert check_knobs.mistyped(os.environ, check_knobs.known_knobs()) == []
