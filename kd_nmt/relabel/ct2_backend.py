"""The CTranslate2 backend: the teacher converted once, then ``Translator.translate_batch``.

Conversion and its cache (``T.pt.ct2-int8/`` next to the teacher, keyed by the checkpoint's
sha256, the quantization, the dictionaries and the ctranslate2 version) are
``kd_nmt.common.ct2_conversion``'s, shared with ``kd-nmt bench`` and ``scripts/export_ct2.py``.

Batches are built like the fairseq backend's (token budget, length-sorted), one
``translate_batch`` call each, with ``max_decoding_length`` from ``--max-len-a/-b`` on the
batch's longest source (as fairseq does). On CPU the batches are submitted asynchronously to
``--threads`` CTranslate2 workers of one thread each (``inter_threads``): on 2 cores this decodes
1.6x faster than one worker with 2 threads (383 vs 241 sents/s, beam 5, the quickstart teacher).
Sources are truncated by the caller;
``max_input_length`` is disabled so CTranslate2 never truncates on its own.

``CT2Translator`` (an already converted model, no torch or fairseq import) is what
``kd-nmt bench`` decodes with; ``CT2Backend`` adds the conversion and relabel's worker layout.
"""
import os

from kd_nmt.common.batches import make_batches
from kd_nmt.common.ct2_conversion import default_model_dir, ensure_converted
from kd_nmt.common.logging_setup import status
from kd_nmt.errors import KDNMTError


def _cfg_get(obj, key):
    try:
        return getattr(obj, key, None) if obj is not None else None
    except Exception:
        return None


def checkpoint_positions(state, default=1024):
    """(max source, max target) positions the fairseq backend would resolve for this teacher."""
    cfg = state.get("cfg") or {}
    model = cfg.get("model") if isinstance(cfg, dict) or hasattr(cfg, "get") else None
    if model is None:
        model = state.get("args")
    src = _cfg_get(model, "max_source_positions") or default
    tgt = _cfg_get(model, "max_target_positions") or default
    return min(int(src), default), min(int(tgt), default)


class CT2Translator:
    """An already converted CTranslate2 model decoding token lists as fairseq would.

    ``positions``: the checkpoint's (max source, max target) positions (``checkpoint_positions``);
    ``inter_threads`` workers of ``intra_threads`` threads each.
    """

    name = "ctranslate2"

    def __init__(self, model_dir, positions, beam=5, lenpen=1.0, max_len_a=0.0, max_len_b=200,
                 nbest=1, batch_tokens=4000, device="cpu", inter_threads=1, intra_threads=1):
        import ctranslate2

        self.model_dir = model_dir
        try:
            self.translator = ctranslate2.Translator(
                model_dir, device=device, inter_threads=inter_threads, intra_threads=intra_threads,
            )
        except Exception as exc:
            raise KDNMTError(
                f"CTranslate2 cannot load {model_dir!r}: {type(exc).__name__}: {exc}"
            ) from None
        src_positions, tgt_positions = positions
        self.max_source_tokens = src_positions - 1
        self.max_target_positions = tgt_positions
        self.beam, self.lenpen, self.nbest = beam, lenpen, nbest
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.batch_tokens = batch_tokens

    def translate(self, token_lists, progress=None):
        """n-best lists ``[(token string, score), ...]`` (best first) for each token list, in order."""
        sizes = [len(t) + 1 for t in token_lists]  # + EOS, as fairseq counts source length
        results = [None] * len(token_lists)
        pending = []
        for batch in make_batches(sizes, self.batch_tokens):
            src_len = max(sizes[i] for i in batch)
            # fairseq: at most max_len tokens, then a forced EOS; CTranslate2's max_decoding_length
            # counts the output tokens (a hypothesis cut there has no EOS): the same bound is max_len
            max_len = min(int(self.max_len_a * src_len + self.max_len_b), self.max_target_positions - 1)
            out = self.translator.translate_batch(
                [token_lists[i] for i in batch],
                beam_size=self.beam, num_hypotheses=self.nbest, length_penalty=self.lenpen,
                max_decoding_length=max_len, max_input_length=0, return_scores=True,
                suppress_sequences=[["<blank>"]],  # fairseq never generates <pad> (<blank> in CT2)
                asynchronous=True,
            )
            pending.append((batch, out))
        for batch, out in pending:
            for i, res in zip(batch, out):
                res = res.result()
                results[i] = [(" ".join(h), float(s)) for h, s in zip(res.hypotheses, res.scores)]
            if progress is not None:
                progress(len(batch))
        return results


class CT2Backend(CT2Translator):
    """relabel's backend: ``teacher`` converted (cached), ``threads`` single-threaded workers on CPU."""

    def __init__(self, teacher, state, data_bin, source_lang, target_lang, quantization="int8",
                 model_dir=None, beam=5, lenpen=1.0, max_len_a=0.0, max_len_b=200, nbest=1,
                 batch_tokens=4000, device="cpu", threads=0):
        model_dir = model_dir or default_model_dir(teacher, quantization)
        model_dir, self.converted = ensure_converted(
            teacher, data_bin, source_lang, target_lang, quantization, model_dir,
            log=status("relabel"), fallback="Use --backend fairseq for this teacher",
        )
        # CPU: one single-threaded worker per core, fed whole batches in parallel
        workers = (threads or os.cpu_count() or 1) if device == "cpu" else 1
        super().__init__(
            model_dir, checkpoint_positions(state), beam=beam, lenpen=lenpen, max_len_a=max_len_a,
            max_len_b=max_len_b, nbest=nbest, batch_tokens=batch_tokens, device=device,
            inter_threads=workers, intra_threads=1 if device == "cpu" else 0,
        )
