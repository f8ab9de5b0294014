"""``kd-nmt cache-teacher --bf16``: the teacher's forward under CPU bfloat16 autocast, float32
weights, log-probs computed in float32 from its logits (and stored as float32 here, so only
bfloat16's own error is measured).

Tolerances, about 3x what the fixture's tiny teacher shows (bfloat16 keeps 8 significant bits):
cached top-k log-probs move by at most 0.04 (mean 0.006), the gold NLL by at most 0.02 (mean
0.004), and the most probable token is the same at 98.5 % of the positions.
"""
import json

import numpy as np
import pytest

from kd_nmt.cache import cli as cache_cli
from kd_nmt.errors import KDNMTError

LOGP_ATOL = 0.12  # any cached top-k log-prob / gold NLL, bf16 vs fp32
LOGP_MEAN_ATOL = 0.015  # their mean absolute difference


def cache_args(teacher, data_bin, out, *extra):
    # float32 log-probs: stored as computed, so only bfloat16's own error is measured
    return ["--teacher", str(teacher), "--data-bin", str(data_bin), "--split", "valid", "--topk", "8",
            "--out", str(out), "--cpu", "--no-progress-bar", "--logp-dtype", "float32", *extra]


def _cache_arrays(path):
    return {name: np.concatenate([np.load(d / f"{name}.npy") for d in sorted((path / "chunks").iterdir())])
            for name in ("ids", "logp", "nll")}


def test_cache_teacher_bf16_close_to_fp32(data_bin, teacher_checkpoint, tmp_path):
    caches = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        flags = ["--bf16"] if precision == "bf16" else []
        assert cache_cli.main(cache_args(teacher_checkpoint, data_bin, out, *flags)) == 0
        caches[precision] = _cache_arrays(out)
    meta = json.loads((tmp_path / "bf16" / "meta.json").read_text())
    assert meta["complete"] and meta["teacher_precision"] == "bfloat16" and meta["logp_dtype"] == "float32"
    c16, c32 = caches["bf16"], caches["fp32"]
    assert c16["logp"].dtype == c32["logp"].dtype == c16["nll"].dtype == np.float32
    assert np.isfinite(c16["logp"]).all() and (c16["logp"] <= 0).all()
    nll_error = np.abs(c16["nll"] - c32["nll"])
    assert nll_error.max() < LOGP_ATOL and nll_error.mean() < LOGP_MEAN_ATOL
    assert (c16["ids"][:, 0] == c32["ids"][:, 0]).mean() > 0.95  # the same most probable token
    same_ids = c16["ids"] == c32["ids"]
    logp_error = np.abs(c16["logp"] - c32["logp"])[same_ids]
    assert logp_error.max() < LOGP_ATOL and logp_error.mean() < LOGP_MEAN_ATOL

    # chunks of a float32 and a bfloat16 pass do not mix
    with pytest.raises(KDNMTError, match=r"differs in: teacher_precision"):
        cache_cli.main(cache_args(teacher_checkpoint, data_bin, tmp_path / "fp32", "--bf16"))
    with pytest.raises(KDNMTError, match="--bf16 is CPU bfloat16 autocast"):
        cache_cli.main(cache_args(teacher_checkpoint, data_bin, tmp_path / "never", "--bf16", "--fp16"))
    assert not (tmp_path / "never").exists()
