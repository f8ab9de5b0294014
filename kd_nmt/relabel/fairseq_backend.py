"""The default backend: fairseq's own ``SequenceGenerator``, as ``fairseq-generate`` builds it.

Batches are token-budgeted and length-sorted; results come back in input order. Sources are
encoded with the source dictionary exactly as ``fairseq-preprocess`` does (``encode_line``,
EOS appended), left-padded like the translation task's datasets, and decoded through
``task.build_generator`` + ``task.inference_step``: the 1-best equals stock fairseq-generate's
H- line for the same teacher and options.

``bf16=True`` runs the forward passes under CPU bfloat16 autocast (``kd_nmt.precision``): the
weights stay float32 and fairseq's beam search normalises the logits in float32
(``utils.log_softmax(..., dtype=float32)``), so scores and hypotheses come back as in float32.
"""
import torch

from kd_nmt.common.batches import make_batches
from kd_nmt.errors import KDNMTError
from kd_nmt.precision import cpu_autocast


class FairseqBackend:
    name = "fairseq"

    def __init__(self, teacher_paths, task, beam=5, lenpen=1.0, max_len_a=0.0, max_len_b=200,
                 nbest=1, batch_tokens=4000, device="cpu", bf16=False):
        from types import SimpleNamespace

        from fairseq import utils
        from fairseq.dataclass.configs import GenerationConfig
        from fairseq_cli.generate import get_symbols_to_strip_from_output

        from kd_nmt.checkpoint import load_models

        self.task = task
        self.src_dict = task.source_dictionary
        self.tgt_dict = task.target_dictionary
        self.nbest = nbest
        self.batch_tokens = batch_tokens
        self.device = torch.device(device)
        self.bf16 = bf16
        self.models, _ = load_models(teacher_paths, task=task)
        gen_cfg = GenerationConfig(
            beam=beam, nbest=nbest, lenpen=lenpen, max_len_a=max_len_a, max_len_b=max_len_b
        )
        for model in self.models:
            model.prepare_for_inference_(SimpleNamespace(generation=gen_cfg))
            model.to(self.device)
        try:
            self.generator = task.build_generator(self.models, gen_cfg)
        except Exception as exc:
            raise KDNMTError(f"cannot build the beam search: {type(exc).__name__}: {exc}") from None
        self.strip = get_symbols_to_strip_from_output(self.generator)
        positions = utils.resolve_max_positions(
            task.max_positions(), *[m.max_positions() for m in self.models]
        )
        src_positions = positions[0] if isinstance(positions, (tuple, list)) else positions
        # tokens a source may have before its EOS
        self.max_source_tokens = int(src_positions) - 1 if src_positions else None
        self._post_process = utils.post_process_prediction

    def encode(self, tokens):
        return self.src_dict.encode_line(
            " ".join(tokens), add_if_not_exist=False, append_eos=True
        ).long()

    @torch.no_grad()
    def translate(self, token_lists, progress=None):
        """n-best lists ``[(token string, score), ...]`` (best first) for each token list, in order."""
        from fairseq.data.data_utils import collate_tokens

        encoded = [self.encode(t) for t in token_lists]
        sizes = [len(e) for e in encoded]
        results = [None] * len(encoded)
        pad, eos = self.src_dict.pad(), self.src_dict.eos()
        for batch in make_batches(sizes, self.batch_tokens):
            src_tokens = collate_tokens([encoded[i] for i in batch], pad, eos, left_pad=True)
            sample = {
                "id": torch.tensor(batch),
                "nsentences": len(batch),
                "ntokens": sum(sizes[i] for i in batch),
                "net_input": {
                    "src_tokens": src_tokens.to(self.device),
                    "src_lengths": torch.tensor([sizes[i] for i in batch]).to(self.device),
                },
            }
            with cpu_autocast(self.bf16):
                hypos = self.task.inference_step(self.generator, self.models, sample)
            for i, nbest in zip(batch, hypos):
                results[i] = [self._hypothesis(h) for h in nbest[: self.nbest]]
            if progress is not None:
                progress(len(batch))
        return results

    def _hypothesis(self, hypo):
        _, text, _ = self._post_process(
            hypo_tokens=hypo["tokens"].int().cpu(), src_str="", alignment=None, align_dict=None,
            tgt_dict=self.tgt_dict, remove_bpe=None, extra_symbols_to_ignore=self.strip,
        )
        return text, float(hypo["score"].float())
