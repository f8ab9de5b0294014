"""The live teacher: a frozen fairseq model (or ensemble) that scores the student's batches.

The teacher is held by the task, never by the criterion or the model: fairseq's Trainer
casts, DDP-wraps, optimizes and saves every submodule of those, and a teacher must be none
of that. It lives in eval mode, runs under ``torch.no_grad()`` and follows the student to
its device and dtype on first use.

An ensemble averages *probabilities* (not log-probabilities):
``log p(y) = logsumexp_i(log p_i(y)) - log n``.
"""
import math

import torch
import torch.nn.functional as F

from kd_nmt.checkpoint import checkpoint_vocab_sizes, load_checkpoint, load_models
from kd_nmt.common.dictionaries import checkpoint_dictionaries, describe_difference
from kd_nmt.errors import KDNMTError
from kd_nmt.teacher.dense import DenseTargets
from kd_nmt.teacher.protocol import KDTeacher


def check_teacher_dictionaries(path, state, src_dict, tgt_dict, langs=(None, None)):
    """Raise one clear KDNMTError if the teacher in ``path`` was trained with other dictionaries.

    ``langs`` (the student's source/target languages) stand in where the teacher's config left
    them to be inferred.
    """
    teacher_dicts = checkpoint_dictionaries(state, langs)
    sizes = checkpoint_vocab_sizes(state)
    for side, ours, theirs, size in zip(
        ("source", "target"), (src_dict, tgt_dict), teacher_dicts, sizes
    ):
        if theirs is not None:
            detail = describe_difference(ours, theirs, ("student", "teacher"))
            if detail:
                raise KDNMTError(
                    f"teacher {path!r} uses a different {side} dictionary: student has "
                    f"{len(ours)} symbols, teacher {len(theirs)}; {detail}. Binarize the student "
                    "data with the teacher's dictionaries (fairseq-preprocess --srcdict/--tgtdict)."
                )
        elif size is not None and size != len(ours):
            raise KDNMTError(
                f"teacher {path!r} uses a different {side} dictionary: student has {len(ours)} "
                f"symbols, teacher {size} (the teacher's dictionary files are not available to "
                "name the first differing symbol). Binarize the student data with the teacher's "
                "dictionaries (fairseq-preprocess --srcdict/--tgtdict)."
            )


class Teacher(KDTeacher):
    """A frozen model ensemble producing (tempered) token distributions on given prefixes."""

    name = "live teacher"
    any_prefix = True  # the student's own outputs too (on-policy KD)
    interpolable = True  # its scores are logits (TAID)

    def __init__(self, models, paths=()):
        if not models:
            raise KDNMTError("a teacher needs at least one checkpoint")
        self.models = list(models)
        self.paths = list(paths)
        for model in self.models:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)

    @classmethod
    def from_paths(cls, paths, task):
        """Load ``a.pt:b.pt`` (or a list) against ``task``'s dictionaries, checking they match."""
        if isinstance(paths, str):
            paths = [p for p in paths.split(":") if p]
        for path in paths:
            state = load_checkpoint(path)
            check_teacher_dictionaries(
                path, state, task.source_dictionary, task.target_dictionary,
                (task.cfg.source_lang, task.cfg.target_lang),
            )
            del state
        models, _ = load_models(paths, task=task)
        return cls(models, paths)

    def __len__(self):
        return len(self.models)

    def to_like(self, tensor):
        """Move the teacher to ``tensor``'s device and floating dtype (once; cheap afterwards).

        Under autocast the student's logits are bfloat16 while its weights are float32: the
        teacher then keeps float32 weights too and runs under the same autocast.
        """
        dtype = tensor.dtype
        if torch.is_autocast_enabled(tensor.device.type):
            dtype = torch.float32
        for model in self.models:
            param = next(model.parameters())
            if param.device != tensor.device or param.dtype != dtype:
                model.to(device=tensor.device, dtype=dtype)

    @torch.no_grad()
    def logits(self, net_input):
        """Per-model output logits ``[B, T, V]`` for the decoder prefix in ``net_input``."""
        return [model(**net_input)[0] for model in self.models]

    @torch.no_grad()
    def log_probs(self, net_input, temperature=1.0, logits=None):
        """Ensemble log-probabilities ``[B, T, V]`` at ``temperature`` (float32)."""
        logits = self.logits(net_input) if logits is None else logits
        lprobs = [F.log_softmax(x.float() / temperature, dim=-1) for x in logits]
        if len(lprobs) == 1:
            return lprobs[0]
        return torch.logsumexp(torch.stack(lprobs), dim=0) - math.log(len(lprobs))

    @torch.no_grad()
    def targets(self, sample, like, with_nll=True):
        """The teacher's view of a batch, for a KD criterion (``KDTeacher.targets``).

        Returns ``(DenseTargets, gold_nll)``: scores ``[B, T, V]`` whose softmax is the
        (ensemble) distribution on the gold prefix of ``sample`` (a single model's raw logits,
        or an ensemble's averaged log-probabilities: fresh tensors the caller owns), and
        ``gold_nll`` ``[B, T]`` the teacher's NLL of ``sample["target"]`` (None unless
        ``with_nll``: no gold NLL pass). Moves the teacher next to ``like`` (the student's logits).
        """
        self.to_like(like)
        logits = self.logits(sample["net_input"])
        targets = DenseTargets(scores=self._scores(logits))
        return targets, self.gold_nll(logits, sample["target"]) if with_nll else None

    def _scores(self, logits):
        return logits[0] if len(logits) == 1 else self.log_probs(None, logits=logits)

    @torch.no_grad()
    def gold_nll(self, logits, target):
        """Per-position NLL ``[B, T]`` of ``target`` under the ensemble at temperature 1.

        Uses logsumexp per model, so no extra ``[B, T, V]`` log-prob tensor is built.
        """
        index = target.unsqueeze(-1)
        per_model = [
            x.float().gather(-1, index).squeeze(-1) - torch.logsumexp(x.float(), dim=-1)
            for x in logits
        ]
        if len(per_model) == 1:
            return -per_model[0]
        return -(torch.logsumexp(torch.stack(per_model), dim=0) - math.log(len(per_model)))
