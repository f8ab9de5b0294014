"""Cost per update of selective and on-policy KD against plain word_kd: same student, same batches.

In one process, for each configuration: the student built from the same seed, the real task,
criterion and batches of ``DATA_BIN``'s train split, and ``--updates`` training steps (criterion
forward with the teacher, backward, Adam step). Each configuration runs ``--repeats`` times,
interleaved; an update's time is the minimum over the repeats (same batch, same weights), in
CPU seconds (``time.process_time``: less sensitive to other processes than wall time).

An untrained student rarely ends its outputs, so on-policy decoding then runs to its bound
(``1.2 * S + 10`` tokens): the worst case. ``--student-init CKPT`` starts the student from a
trained checkpoint of the same architecture instead (on the fixture: the teacher itself), whose
outputs end where a translation does.

    python benchmarks/on_policy_cost.py DATA_BIN TEACHER.pt               # the fixture: ~1 min
    python benchmarks/on_policy_cost.py DATA_BIN TEACHER.pt --student-init TEACHER.pt
    python benchmarks/on_policy_cost.py DATA_BIN TEACHER.pt --updates 20 --arch transformer_kd_small
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kd_nmt.registry  # noqa: F401  (the plugin's registrations)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import TINY_ARCH as TINY  # noqa: E402  (the tests' transformer that trains in seconds)
CONFIGS = {
    "word_kd": [],
    "select_batch_0.5": ["--kd-select", "batch", "--kd-select-rate", "0.5"],
    "select_global_0.5": ["--kd-select", "global", "--kd-select-rate", "0.5"],
    "on_policy_0.25": ["--kd-on-policy", "0.25"],
    "on_policy_0.5": ["--kd-on-policy", "0.5"],
    "on_policy_1.0": ["--kd-on-policy", "1.0"],
    "on_policy_0.5_sample": ["--kd-on-policy", "0.5", "--kd-student-sampling", "sample"],
}


def build(data_bin, teacher, arch, max_tokens, extra, student_init=None):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(data_bin), *arch, "--cpu", "--seed", "1", "--task", "kd_translation", "--teacher-path", str(teacher),
            "--criterion", "word_kd", "--label-smoothing", "0.1", "--max-tokens", str(max_tokens), *extra]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(1)
    model = task.build_model(cfg.model)
    if student_init:
        from kd_nmt.checkpoint import load_checkpoint

        model.load_state_dict(load_checkpoint(student_init)["model"])
    return task, model, task.build_criterion(cfg.criterion)


def time_updates(task, model, criterion, batches):
    """CPU seconds of each update (criterion forward, backward, Adam step)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for step, sample in enumerate(batches):
        torch.manual_seed(step)  # on-policy rows / samples: the same in every repeat
        start = time.process_time()
        loss, sample_size, _ = criterion(model, sample)
        optimizer.zero_grad()
        (loss / sample_size).backward()
        optimizer.step()
        times.append(time.process_time() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_bin")
    parser.add_argument("teacher")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=2000)
    parser.add_argument("--student-init", help="start the student from this checkpoint (same architecture)")
    parser.add_argument("--arch", nargs="*", default=None, help="student architecture options (default: tiny)")
    args = parser.parse_args(argv)
    arch = TINY if args.arch is None else (["--arch", *args.arch] if len(args.arch) == 1 else args.arch)
    torch.set_num_threads(1)
    best = {}
    for _ in range(args.repeats):
        for name, extra in CONFIGS.items():
            task, model, criterion = build(args.data_bin, args.teacher, arch, args.max_tokens, extra, args.student_init)
            task.load_dataset("train")
            itr = task.get_batch_iterator(task.dataset("train"), max_tokens=args.max_tokens, seed=1)
            batches = list(itr.next_epoch_itr(shuffle=True))[:args.updates]
            times = time_updates(task, model, criterion, batches)
            best[name] = times if name not in best else [min(a, b) for a, b in zip(best[name], times)]
    base = sum(best["word_kd"]) / len(best["word_kd"])
    print(f"{'configuration':<22} {'s/update':>9} {'x word_kd':>9}")
    for name, times in best.items():
        mean = sum(times) / len(times)
        print(f"{name:<22} {mean:9.3f} {mean / base:9.2f}")


if __name__ == "__main__":
    main()
