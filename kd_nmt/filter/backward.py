"""Backward-model score: how well the teacher's output explains its source.

A target→source model (trained on the same data-bin, languages swapped) scores
``log P(source | hypothesis)`` by one teacher-forced forward pass, divided by the number of
source tokens (EOS included): the mean log-probability per token, natural log. A hallucinated
or truncated teacher output cannot explain its source and scores low (Junczys-Dowmunt 2018's
dual conditional cross-entropy uses the same quantity).

Batches are token-budgeted and length-sorted (``kd_nmt.common.batches``); the score of a line
depends only on its batch, which depends only on the input lengths and ``batch_tokens``, so a
rerun gives the same scores.
"""
import torch

from kd_nmt.common.batches import make_batches
from kd_nmt.common.task_setup import translation_task
from kd_nmt.errors import KDNMTError


class BackwardScorer:
    """``scores(sources, hypotheses)``: per line, mean log P(source token | hypothesis)."""

    def __init__(self, paths, data_bin, source_lang, target_lang, batch_tokens=4000):
        from fairseq import utils

        from kd_nmt.teacher import Teacher

        # the backward model translates target -> source: its task has the languages swapped
        self.task = translation_task(data_bin, target_lang, source_lang)
        try:
            self.model = Teacher.from_paths(paths, self.task)
        except KDNMTError as exc:  # "student" there = --data-bin here, "teacher" = backward model
            raise KDNMTError(
                f"--backward-model does not match --data-bin {data_bin!r} read as "
                f"{target_lang}->{source_lang}: {exc}"
            ) from None
        self.hyp_dict = self.task.source_dictionary
        self.src_dict = self.task.target_dictionary
        self.batch_tokens = batch_tokens
        positions = utils.resolve_max_positions(
            self.task.max_positions(), *[m.max_positions() for m in self.model.models]
        )
        hyp_max, src_max = positions if isinstance(positions, (tuple, list)) else (positions,) * 2
        # tokens a sequence may have before its EOS (None: unlimited)
        self.max_tokens = (
            None if hyp_max is None else int(hyp_max) - 1,
            None if src_max is None else int(src_max) - 1,
        )
        self.truncated = 0

    def _encode(self, dictionary, line, limit):
        tokens = line.split()
        if limit is not None and len(tokens) > limit:
            tokens = tokens[:limit]  # scored on its beginning, like relabel's truncation
            self.truncated += 1
        return dictionary.encode_line(" ".join(tokens), add_if_not_exist=False, append_eos=True).long()

    @torch.no_grad()
    def scores(self, sources, hypotheses, progress=None):
        from fairseq.data.data_utils import collate_tokens

        inputs = [self._encode(self.hyp_dict, h, self.max_tokens[0]) for h in hypotheses]
        targets = [self._encode(self.src_dict, s, self.max_tokens[1]) for s in sources]
        sizes = [max(len(a), len(b)) for a, b in zip(inputs, targets)]
        pad, eos = self.hyp_dict.pad(), self.hyp_dict.eos()
        result = [None] * len(inputs)
        for batch in make_batches(sizes, self.batch_tokens):
            target = collate_tokens([targets[i] for i in batch], pad, eos, left_pad=False)
            net_input = {
                "src_tokens": collate_tokens([inputs[i] for i in batch], pad, eos, left_pad=True),
                "src_lengths": torch.tensor([len(inputs[i]) for i in batch]),
                "prev_output_tokens": collate_tokens(
                    [targets[i] for i in batch], pad, eos, left_pad=False, move_eos_to_beginning=True
                ),
            }
            nll = self.model.gold_nll(self.model.logits(net_input), target)  # [B, T], natural log
            mask = target.ne(pad)
            mean = -(nll * mask).sum(dim=1) / mask.sum(dim=1)
            for i, value in zip(batch, mean.tolist()):
                result[i] = value
            if progress is not None:
                progress(len(batch))
        return result
