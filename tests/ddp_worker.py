"""Run fairseq-train under torchrun and report, per rank, the reduced loss and a weight checksum.

Used by test_train_e2e.py: fairseq logs on rank 0 only, so this wrapper records what every
rank's real ``Trainer.train_step`` returned (the all-reduced logging output) and prints one
``RANK r LOSS x CHECKSUM c`` line per rank at exit.
"""
import sys

import torch
from fairseq import trainer as fairseq_trainer
from fairseq_cli import train

results = {}
original_train_step = fairseq_trainer.Trainer.train_step


def recording_train_step(self, samples, raise_oom=False):
    out = original_train_step(self, samples, raise_oom)
    if out is not None:
        results["loss"] = float(out["loss"])
        results["trainer"] = self
    return out


fairseq_trainer.Trainer.train_step = recording_train_step
sys.argv = ["fairseq-train"] + sys.argv[1:]
train.cli_main()
model = results["trainer"].model
checksum = sum(float(p.double().sum()) for p in model.parameters())
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
print(f"\nRANK {rank} LOSS {results['loss']:.6f} CHECKSUM {checksum:.6f}", flush=True)
