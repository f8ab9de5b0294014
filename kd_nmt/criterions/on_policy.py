"""On-policy KD (GKD: Agarwal et al., ICLR 2024; ImitKD: Lin et al., EMNLP 2020): for a fraction
of a batch's sentences, the KD term is taken on the student's *own* output instead of the gold
prefix.

For each training batch of ``B`` sentences, ``m = floor(lambda * B + u)`` of them (``u`` uniform
in [0, 1): stochastic rounding, so the expected fraction is exactly ``lambda``; the rows are a
random subset) are decoded by the student, without gradient and in eval mode (no dropout),
with its current weights: greedy, or sampled at ``--kd-sampling-temperature``, up to
``int(a * S + b)`` tokens plus EOS (``S`` the padded source length of those rows, as fairseq's
``--max-len-a/--max-len-b``; capped by the decoder's positions). The encoder runs once for the
decoding (its output is reused at every step, incremental decoding, no beam); EOS is not allowed
as the first token (fairseq's ``min_len`` 1), padding never.

The criterion then runs *one* student forward over ``B + m`` rows: the ``B`` gold prefixes and the
``m`` generated ones (so a DDP-wrapped student sees one forward per batch), and the live teacher
scores the same ``B + m`` prefixes. The gold CE term covers the gold tokens of all ``B``
sentences; the KD term the gold tokens of the ``B - m`` others and the generated tokens of the
``m`` (including their EOS). A teacher cache holds distributions on gold prefixes only, so it
cannot be used (one clear error).

Cost per update on top of word_kd: the decoding (an encoder pass and up to ``a * S + b`` decoder
steps over ``m`` rows) and the extra ``m`` rows in the student's and the teacher's forward;
measured in docs/selective_on_policy_kd.md.
"""
import math

import torch

from kd_nmt.errors import KDNMTError

STUDENT_SAMPLING = ("greedy", "sample")


def check_on_policy(fraction, sampling, temperature, max_len_a, max_len_b):
    """One clear KDNMTError for a bad ``--kd-on-policy*`` / ``--kd-student-sampling`` value."""
    if not 0.0 <= fraction <= 1.0:
        raise KDNMTError(f"--kd-on-policy must be in [0, 1] (the fraction of sentences), got {fraction}")
    if sampling not in STUDENT_SAMPLING:
        raise KDNMTError(f"--kd-student-sampling must be one of {', '.join(STUDENT_SAMPLING)}, got {sampling!r}")
    if temperature <= 0:
        raise KDNMTError(f"--kd-sampling-temperature must be > 0, got {temperature}")
    if max_len_a < 0 or max_len_b < 0:
        raise KDNMTError(
            f"--kd-on-policy-max-len-a/-b must be >= 0, got {max_len_a} / {max_len_b}"
        )


def pick_rows(bsz, fraction, device=None):
    """The sorted indices ``[m]`` of the on-policy sentences, ``m = floor(fraction * B + u)``."""
    m = min(bsz, math.floor(fraction * bsz + float(torch.rand(()))))
    return torch.randperm(bsz)[:m].sort().values.to(device)


def unwrap(model):
    """The fairseq model inside DDP wrappers (decoding calls its encoder and decoder directly)."""
    while not hasattr(model, "encoder") and hasattr(model, "module"):
        model = model.module
    return model


@torch.no_grad()
def student_outputs(model, src_tokens, src_lengths, *, pad, eos, sampling="greedy", temperature=1.0,
                    max_len_a=1.2, max_len_b=10):
    """The student's own translations of ``src_tokens`` ``[m, S]``: ``[m, L]`` ids, each row
    ending in EOS, padded with ``pad`` (see the module docstring for the bounds).

    Greedy decoding is fairseq's ``SequenceGenerator`` with ``--beam 1`` (same bound, same
    banned tokens); the model is put in eval mode for it and back in its mode after.
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        m = src_tokens.size(0)
        max_len = int(max_len_a * src_tokens.size(1) + max_len_b)
        max_len = max(1, min(max_len, model.max_decoder_positions() - 1))  # >= 1: EOS is banned at step 0
        encoder_out = model.encoder.forward_torchscript({"src_tokens": src_tokens, "src_lengths": src_lengths})
        tokens = src_tokens.new_full((m, max_len + 2), pad)
        tokens[:, 0] = eos
        done = torch.zeros(m, dtype=torch.bool, device=src_tokens.device)
        state = {}
        for step in range(max_len + 1):
            logits = model.decoder(tokens[:, :step + 1], encoder_out=encoder_out, incremental_state=state)[0]
            logits = logits[:, -1].float()
            logits[:, pad] = -math.inf
            if step == 0:
                logits[:, eos] = -math.inf
            if step >= max_len:  # the bound: only EOS is left
                logits[:, :eos] = -math.inf
                logits[:, eos + 1:] = -math.inf
            if sampling == "sample":
                probs = torch.softmax(logits / temperature, dim=-1)
                chosen = torch.multinomial(probs, 1).squeeze(-1)
            else:
                chosen = logits.argmax(-1)
            chosen = chosen.masked_fill(done, pad)
            tokens[:, step + 1] = chosen
            done |= chosen.eq(eos)
            if done.all():
                break
        return tokens[:, 1:step + 2]
    finally:
        model.train(was_training)


def as_prefix(target, pad, eos):
    """``prev_output_tokens`` of right-padded targets: EOS then the target shifted right, padded."""
    prev = torch.cat([target.new_full((target.size(0), 1), eos), target[:, :-1]], dim=1)
    return prev.masked_fill(target.eq(pad), pad)


def pad_to(x, length, pad):
    """Right-pad ``[B, T]`` ids to ``[B, length]``."""
    return torch.nn.functional.pad(x, (0, length - x.size(1)), value=pad)


def joint_batch(sample, rows, outputs, pad, eos):
    """``(net_input, target, ce_mask, kd_mask)`` of the ``B + m`` rows [gold; generated].

    Sources of the ``rows`` are repeated; prefixes and targets right-padded to the longer of
    the two; ``ce_mask`` ``[B + m, T]`` the gold rows, ``kd_mask`` the gold rows not in ``rows``
    and the generated rows (padding is masked by the objective itself).
    """
    net_input = sample["net_input"]
    gold_target = sample["target"]
    bsz = gold_target.size(0)
    length = max(gold_target.size(1), outputs.size(1))
    joint = {
        key: torch.cat([value, value[rows]]) if torch.is_tensor(value) and value.size(0) == bsz else value
        for key, value in net_input.items()
    }
    joint["prev_output_tokens"] = torch.cat(
        [pad_to(net_input["prev_output_tokens"], length, pad), pad_to(as_prefix(outputs, pad, eos), length, pad)]
    )
    target = torch.cat([pad_to(gold_target, length, pad), pad_to(outputs, length, pad)])
    is_gold = torch.arange(bsz + rows.numel(), device=target.device) < bsz
    off_policy = is_gold.clone()
    off_policy[rows] = False
    ce_mask = is_gold[:, None].expand_as(target)
    kd_mask = (off_policy | ~is_gold)[:, None].expand_as(target)
    return joint, target, ce_mask, kd_mask
