"""The corpus a relabel run works on: which lines a shard covers.

Reading (exactly as ``fairseq-preprocess`` reads: ``kd_nmt.common.lines``), batching
(``kd_nmt.common.batches``) and detokenization (``kd_nmt.common.detokenize``) are shared with
the other commands; the names below stay importable from here for scripts written against them.
"""
from kd_nmt.common.batches import make_batches  # noqa: F401
from kd_nmt.common.detokenize import REMOVE_BPE, detokenize  # noqa: F401
from kd_nmt.common.lines import TextFile  # noqa: F401


def shard_range(n_lines, num_shards, shard_id):
    """Contiguous ``[start, end)`` slice of shard ``shard_id``: shards in order cover every line."""
    start = n_lines * shard_id // num_shards
    end = n_lines * (shard_id + 1) // num_shards
    return start, end
