"""kd_nmt: knowledge distillation for neural machine translation, as a fairseq plugin.

``fairseq-train --user-dir kd_nmt`` (or ``kd-nmt train``) imports this package, which
registers the task ``kd_translation`` and the criterions ``word_kd`` / ``hybrid_kd`` and makes
fairseq load checkpoints on torch >= 2.6 (see ``kd_nmt.checkpoint``). ``kd_nmt.divergences``
is plain torch and imports without fairseq.
"""
__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError:  # divergences and data tools still work without fairseq
    fairseq = None

if fairseq is not None:
    from kd_nmt import registry  # noqa: F401,E402
