"""``kd-nmt bench --backend ctranslate2``: a converted checkpoint decoding lines of pieces.

The conversion and its cache are ``kd_nmt.common.ct2_conversion``'s (``T.pt.ct2-QUANT/`` next to
the checkpoint, keyed by its sha256 and the quantization), the decoding relabel's
``CT2Translator`` (fairseq's length bound, ``<pad>`` never generated). One ``translate_batch``
call per bench batch, on one worker of ``threads`` threads: the call's wall time is what is timed.
No torch or fairseq import: the deploy worker measures a CTranslate2-only process.
"""
import sys
import time

from kd_nmt.common.ct2_conversion import check_model_dir_writable, default_model_dir, ensure_converted


def convert(checkpoint, data_bin, source_lang, target_lang, quantization, log=None):
    """The CTranslate2 model directory of ``checkpoint`` (converted now unless cached)."""
    model_dir = default_model_dir(checkpoint, quantization)
    check_model_dir_writable(model_dir, fix="copy the checkpoint to a writable folder")
    model_dir, _ = ensure_converted(checkpoint, data_bin, source_lang, target_lang, quantization, model_dir,
                                    log=log, fallback="Use --backend fairseq for this checkpoint")
    return model_dir


class CT2Engine:
    """``translate(indices)`` over ``token_lists`` (lists of source pieces, EOS not included)."""

    name = "ctranslate2"

    def __init__(self, model_dir, positions, token_lists, beam=1, max_len_a=0.0, max_len_b=200,
                 device="cpu", threads=1):
        from kd_nmt.relabel.ct2_backend import CT2Translator

        # the bench batches: one translate_batch call for whatever indices it is given
        self.translator = CT2Translator(
            model_dir, positions, beam=beam, max_len_a=max_len_a, max_len_b=max_len_b, nbest=1,
            batch_tokens=sys.maxsize, device=device, inter_threads=1, intra_threads=threads,
        )
        self.max_source = self.translator.max_source_tokens
        self.token_lists = token_lists
        self.sizes = [min(len(t), self.max_source) + 1 for t in token_lists]

    def translate(self, indices):
        sources = [self.token_lists[i][: self.max_source] for i in indices]
        truncated = sum(1 for i in indices if len(self.token_lists[i]) > self.max_source)
        start = time.perf_counter()
        nbests = self.translator.translate(sources)
        seconds = time.perf_counter() - start
        return [nbest[0][0] for nbest in nbests], seconds, truncated
