"""scripts/shrink_teacher.py: a student initialised with some of the teacher's layers."""
import sys

import pytest
import torch

from helpers import PLUGIN, REPO, TINY_ARCH, TRAIN_COMMON, run, tool, train_losses
from kd_nmt.errors import KDNMTError

sys.path.insert(0, str(REPO / "scripts"))

import shrink_teacher  # noqa: E402


def test_spread_keeps_first_and_last_evenly():
    assert shrink_teacher.spread(1, 3) == [0]
    assert shrink_teacher.spread(2, 3) == [0, 2]
    assert shrink_teacher.spread(3, 3) == [0, 1, 2]
    assert shrink_teacher.spread(3, 6) == [0, 2, 5]  # Shleifer & Rush's choice for 6 -> 3
    assert shrink_teacher.spread(3, 12) == [0, 6, 11]


@pytest.mark.parametrize("text, message", [
    ("3", "indices must be distinct and in 0..2"),
    ("0,0", "indices must be distinct"),
    ("first", "give indices like 0,2 or spread:N"),
    ("spread:4", "N must be 1..3"),
    ("spread:0", "N must be 1..3"),
])
def test_bad_layer_choices_are_one_clear_error(text, message):
    with pytest.raises(KDNMTError, match=message):
        shrink_teacher.parse_layers(text, 3, "decoder")
    assert shrink_teacher.parse_layers("2,0", 3, "decoder") == [0, 2]


def test_layers_are_dropped_and_renumbered_ties_kept():
    emb = torch.randn(10, 4, dtype=torch.float16)
    weights = {"encoder.embed_tokens.weight": emb, "decoder.embed_tokens.weight": emb,
               "decoder.output_projection.weight": emb, "encoder.version": torch.tensor([3.0])}
    for i in range(3):
        weights[f"decoder.layers.{i}.fc1.weight"] = torch.full((2, 2), float(i), dtype=torch.float16)
        weights[f"encoder.layers.{i}.fc1.weight"] = torch.full((2, 2), 10.0 + i)
    assert shrink_teacher.layer_counts(weights) == {"encoder": 3, "decoder": 3}
    out = shrink_teacher.shrink_weights(weights, {"encoder": [0, 1, 2], "decoder": [0, 2]})
    assert shrink_teacher.layer_counts(out) == {"encoder": 3, "decoder": 2}
    assert out["decoder.layers.0.fc1.weight"].eq(0).all() and out["decoder.layers.1.fc1.weight"].eq(2).all()
    assert "decoder.layers.2.fc1.weight" not in out
    assert all(v.dtype == torch.float32 for v in out.values())
    # the three tied embedding names stay one tensor (one copy on disk, one parameter count)
    assert out["encoder.embed_tokens.weight"] is out["decoder.output_projection.weight"]
    torch.testing.assert_close(out["decoder.embed_tokens.weight"], emb.float())


def two_decoder_layer_teacher(teacher_checkpoint, path):
    """The fixture teacher (1+1) with a second, different decoder layer: a 1+2 teacher."""
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=False)
    for k in [k for k in state["model"] if k.startswith("decoder.layers.0.")]:
        v = state["model"][k]
        state["model"][k.replace("layers.0.", "layers.1.")] = v * 0.5 if v.is_floating_point() else v
    state["cfg"]["model"].decoder_layers = 2
    torch.save(state, path)
    return state


def test_shrunk_teacher_loads_in_fairseq_with_the_kept_layer(tmp_path, teacher_checkpoint):
    from fairseq import checkpoint_utils

    teacher = two_decoder_layer_teacher(teacher_checkpoint, tmp_path / "t.pt")
    out = tmp_path / "init" / "s.pt"
    shrink_teacher.main(["--teacher", str(tmp_path / "t.pt"), "--decoder-layers", "1", "--out", str(out)])
    models, cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(out)])
    assert cfg.model.decoder_layers == 1 and len(models[0].decoder.layers) == 1
    # a criterion with parameters (hybrid_kd's gate) finds the key fairseq reads, empty
    saved = torch.load(out, weights_only=False)
    assert "criterion" in saved and saved["criterion"] is None
    got = models[0].state_dict()
    name = "decoder.layers.0.fc1.weight"
    torch.testing.assert_close(got[name], teacher["model"]["decoder.layers.1.fc1.weight"])
    torch.testing.assert_close(got["encoder.layers.0.fc1.weight"], teacher["model"]["encoder.layers.0.fc1.weight"])
    with pytest.raises(KDNMTError, match="is the teacher itself"):
        shrink_teacher.main(["--teacher", str(out), "--out", str(out)])


def test_finetune_from_shrunk_teacher_starts_where_the_teacher_is(tmp_path, teacher_checkpoint, data_bin):
    """Every layer kept: the student's first loss is the trained teacher's, far below a fresh start."""
    init = tmp_path / "init.pt"
    shrink_teacher.main(["--teacher", str(teacher_checkpoint), "--out", str(init)])

    def first_loss(save, *extra):
        proc = run([tool("fairseq-train"), data_bin, *TINY_ARCH, *TRAIN_COMMON, "--user-dir", PLUGIN,
                    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
                    "--max-update", "2", "--save-dir", save, "--disable-validation", *extra])
        return train_losses(proc.stdout + proc.stderr)[0]

    shrunk = first_loss(tmp_path / "shrunk", "--finetune-from-model", init)
    fresh = first_loss(tmp_path / "fresh")
    assert shrunk < fresh - 2.0, (shrunk, fresh)
    # the student's own run starts at update 0 (nothing of the teacher's schedule is carried over)
    last = torch.load(tmp_path / "shrunk" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert last["optimizer_history"][-1]["num_updates"] == 2
