"""scripts/ship_checkpoint.py's MANIFEST handling: --update adds entries, --verify catches a change."""
import hashlib
import json
import subprocess
import sys

from helpers import REPO

TOOL = str(REPO / "scripts" / "ship_checkpoint.py")


def shipped(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights")
    manifest = {"files": {"model.pt": hashlib.sha256(b"weights").hexdigest()}, "note": "n"}
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    return tmp_path


def tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def test_update_adds_json_values_and_keeps_the_checksums(tmp_path):
    out = shipped(tmp_path)
    got = tool("--update", str(out), "--info", 'scores={"test": {"bleu": 38.1}}', "wall=123", "machine=2 cores")
    assert got.returncode == 0, got.stderr
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["scores"] == {"test": {"bleu": 38.1}} and manifest["wall"] == 123
    assert manifest["machine"] == "2 cores" and manifest["note"] == "n"
    assert not (out / "MANIFEST.json.tmp").exists()
    assert tool("--verify", str(out)).returncode == 0


def test_verify_names_a_changed_file(tmp_path):
    out = shipped(tmp_path)
    (out / "model.pt").write_bytes(b"weighty")
    got = tool("--verify", str(out))
    assert got.returncode == 1
    assert got.stderr.startswith(f"ship_checkpoint: error: {out}/model.pt does not match its sha256")


def test_update_without_a_manifest_is_one_line(tmp_path):
    got = tool("--update", str(tmp_path), "--info", "a=1")
    assert got.returncode == 1 and got.stderr.count("\n") == 1
    assert "MANIFEST.json unreadable" in got.stderr and "ship the model first" in got.stderr


def test_run_without_interval_checkpoints_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint_last.pt").write_bytes(b"x")  # not an interval checkpoint
    got = tool("--run", str(tmp_path / "run"), "--average", "5", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert got.returncode == 2 and got.stderr.count("\n") == 1
    assert got.stderr.startswith(f"ship_checkpoint: error: --run {tmp_path / 'run'}: no checkpoint_E_U.pt there")
