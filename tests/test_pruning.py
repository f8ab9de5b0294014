"""kd_nmt/pruning.py and scripts/prune.py: class-blind magnitude pruning by hand, retraining that
keeps the pruned weights at 0."""
import csv
import json
import subprocess
import sys

import pytest
import torch

from helpers import REPO, TINY_ARCH, TRAIN_COMMON, run, tool
from kd_nmt.pruning import magnitude_masks, prunable, sparse_bytes


def hand_weights():
    shared = torch.tensor([[2.0, -0.1], [0.0, 4.0]])
    return {
        "encoder.embed_tokens.weight": shared,
        "decoder.embed_tokens.weight": shared,  # tied: the same matrix
        "encoder.layers.0.fc1.weight": torch.tensor([[1.0, -5.0], [0.5, 3.0]]),
        "encoder.layers.0.fc1.bias": torch.tensor([9.0, 9.0]),  # biases stay dense
    }


def test_class_blind_masks_by_hand():
    w = hand_weights()
    assert prunable(w) == ["encoder.embed_tokens.weight", "encoder.layers.0.fc1.weight"]
    # 8 matrix entries, keep 3/8: the largest |w| over both matrices are 5, 4, 3
    masks = magnitude_masks(w, 3 / 8)
    assert masks["encoder.embed_tokens.weight"].tolist() == [[False, False], [False, True]]
    assert masks["encoder.layers.0.fc1.weight"].tolist() == [[False, True], [False, True]]
    assert magnitude_masks(w, 1.0)["encoder.layers.0.fc1.weight"].all()
    with pytest.raises(ValueError, match="keep must be in"):
        magnitude_masks(w, 0.0)


def test_sparse_size_by_hand():
    w = hand_weights()
    # distinct tensors: the 2x2 shared (3 nonzeros), the 2x2 fc1 (4 nonzeros), the bias (2)
    # dense fp16: (4 + 4 + 2) * 2 = 20; sparse: bitmaps 1 + 1 bytes, nonzeros (3 + 4) * 2, bias 4
    assert sparse_bytes(w) == {"dense_fp16": 20, "sparse_fp16": 1 + 1 + 14 + 4}


def test_prune_then_retrain_keeps_the_zeros(data_bin, teacher_checkpoint, tmp_path):
    out = tmp_path / "pruned"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "prune.py"), "--checkpoint", str(teacher_checkpoint),
                           "--keep", "0.3", "1.0", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "prune.json").read_text())
    row = report["rows"][0]
    assert row["matrix_nonzero"] == round(0.3 * row["matrix_entries"])
    # 30 % kept: a bit an entry + 2 bytes a kept entry, against 2 bytes an entry dense
    assert row["sparse_fp16"] < 0.5 * row["dense_fp16"] and row["dense_fp16"] == report["rows"][1]["dense_fp16"]
    state = torch.load(out / "keep0.3.pt", weights_only=False)
    assert "last_optimizer_state" not in state
    model = state["model"]
    assert model["encoder.embed_tokens.weight"].data_ptr() == model["decoder.embed_tokens.weight"].data_ptr()

    def retrain(save, *extra):
        run([tool("kd-nmt"), "train", data_bin, "--task", "kd_translation", *TINY_ARCH, *TRAIN_COMMON,
             "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
             "--finetune-from-model", out / "keep0.3.pt", "--max-update", "3", "--save-dir", save, *extra])
        weights = torch.load(save / "checkpoint_last.pt", weights_only=False)["model"]
        names = prunable(weights)
        return sum(int(weights[n].count_nonzero()) for n in names), sum(weights[n].numel() for n in names)

    kept, total = retrain(tmp_path / "masked", "--keep-pruned")
    assert kept <= round(0.3 * total)  # the pruned weights stayed 0 through 3 Adam steps
    regrown, _ = retrain(tmp_path / "free")
    assert regrown > 0.9 * total  # without --keep-pruned Adam moves every weight off 0


def prune_table(*argv):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "prune_table.py"), *map(str, argv)],
                          capture_output=True, text=True, timeout=120)


def test_prune_table_by_hand(tmp_path):
    """scripts/prune_table.py: nonzeros of the pruned and retrained files, x fewer than the
    teacher, sizes and the delta against the unpruned retrained student, from hand-made files."""
    prune_dir = tmp_path / "pruned"
    (prune_dir / "retrain1").mkdir(parents=True)
    (prune_dir / "retrain0.5").mkdir()
    dense = hand_weights()  # 8 matrix entries (7 nonzero: the shared one has a 0) + 2 bias
    half = {k: v.clone() for k, v in dense.items()}
    half["decoder.embed_tokens.weight"] = half["encoder.embed_tokens.weight"]  # still tied
    half["encoder.layers.0.fc1.weight"][0, 0] = 0.0
    half["encoder.layers.0.fc1.weight"][1, 0] = 0.0
    for path, weights in ((prune_dir / "keep1.pt", dense), (prune_dir / "retrain1/checkpoint_best.pt", dense),
                          (prune_dir / "keep0.5.pt", half), (prune_dir / "retrain0.5/checkpoint_best.pt", half)):
        torch.save({"model": weights}, path)
    (prune_dir / "prune.json").write_text(json.dumps({"rows": [{"keep": 1.0}, {"keep": 0.5}]}))
    bench = tmp_path / "bench.csv"
    bench.write_text("name,keep,stage,decode,params,bleu\n"
                     "teacher,,,beam5,90,40.0\n"
                     "1/pruned,1,pruned,beam5,10,20.0\n1/retrained,1,retrained,beam5,10,21.0\n"
                     "0.5/pruned,0.5,pruned,beam5,10,15.5\n0.5/retrained,0.5,retrained,beam5,10,20.25\n"
                     "0.5/retrained,0.5,retrained,greedy,10,19.0\n")
    out = tmp_path / "prune.md"
    proc = prune_table("--prune-dir", prune_dir, "--bench", bench, "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["keep"], r["stage"]): r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    # dense: 7 nonzero matrix entries + 2 biases = 9; half: 5 + 2 = 7
    assert rows[("1", "pruned")]["nonzero_params"] == "9" and rows[("0.5", "retrained")]["nonzero_params"] == "7"
    assert rows[("0.5", "retrained")]["fewer_than_teacher"] == f"{90 / 7:.1f}"
    assert rows[("0.5", "retrained")]["delta_beam_vs_unpruned"] == "-0.75"
    assert rows[("0.5", "pruned")]["delta_beam_vs_unpruned"] == "-5.50"
    assert rows[("0.5", "retrained")]["bleu_greedy"] == "19.00" and rows[("1", "pruned")]["bleu_greedy"] == ""
    # sizes: 10 distinct entries x 2 B dense; sparse: bitmaps (1 B each matrix) + 2 B a nonzero + bias dense
    assert rows[("0.5", "retrained")]["dense_fp16_mb"] == f"{20 / 1e6:.2f}"
    assert "| 50% | retrained | 7 |" in out.read_text()


def test_prune_table_without_a_teacher_row_is_one_line(tmp_path):
    (tmp_path / "prune.json").write_text(json.dumps({"rows": [{"keep": 1.0}]}))
    bench = tmp_path / "bench.csv"
    bench.write_text("name,keep,stage,decode,params,bleu\n1/pruned,1,pruned,beam5,10,20.0\n")
    proc = prune_table("--prune-dir", tmp_path, "--bench", bench, "--out", tmp_path / "t.md")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "has no 'teacher' row" in proc.stderr and not (tmp_path / "t.md").exists()
