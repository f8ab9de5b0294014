#!/usr/bin/env python3
"""The features of every study cell that ``kd-nmt advise``'s model is fitted on, measured by
``kd-nmt advise``'s own code (``kd_nmt.advise.features.measure``), into one committed CSV.

    python scripts/measure_advise_cells.py --deen-data work/advise/deen \\
        --multi30k-data work/multi30k/data/bin --out docs/advise/data_features.csv

A row per (teacher, training data) of the study: the Debian corpus's clean 5,000 pairs and its
six noisy copies (data.noise on the training source, seed 1, as recipes/text_complexity.sh made
them), all under the shipped teacher models/teacher-deen; and Multi30k's training split under
models/teacher-multi30k. The student's share (parameter ratio, decoding) is added per cell by
scripts/fit_advise.py, which reads this table. A Debian data-bin missing under --deen-data is
prepared first exactly as the study prepared it (data.prepare: the first 5,000 training pairs,
the teacher's sentencepiece model and joined dictionary, --seed 1, the noise); it needs the
built corpus (python -m data.build_corpus). Each measurement is cached as
WORK/advise/cells/NAME.json: a rerun measures only what is missing.

example:
  python scripts/measure_advise_cells.py --deen-data work/advise/deen --multi30k-data \\
      work/multi30k/data/bin --out docs/advise/data_features.csv --no-progress
"""
import csv
import io
import json
import os

from tool_common import REPO, run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_write
from kd_nmt.errors import KDNMTError

DEEN_TEACHER = os.path.join(REPO, "models", "teacher-deen")
MULTI30K_TEACHER = os.path.join(REPO, "models", "teacher-multi30k", "model.pt")
NOISES = [(kind, rate) for kind in ("dropout", "replace", "shuffle") for rate in (0.1, 0.3)]
# data cell name -> (corpus, noise kind, noise rate); the Debian names are the data-bins' folders
CELLS = {"deen-clean": ("deen", "", 0.0), **{f"deen-{k}-{r}": ("deen", k, r) for k, r in NOISES},
         "multi30k": ("multi30k", "", 0.0)}
# the study's student sizes per corpus (recipes/kim_rush.sh, recipes/multi30k.sh)
STUDENTS = {"deen": ("transformer_kd_small_d3", "transformer_kd_small_d2", "transformer_kd_small_d1"),
            "multi30k": ("transformer_kd_narrow", "transformer_kd_tiny", "transformer_kd_micro")}
SIZE_COLUMNS = ["corpus", "arch", "size", "params", "teacher_params"]
COLUMNS = ["data_cell", "corpus", "noise", "noise_rate", "teacher", "teacher_params", "split_sentences",
           "sample_sentences", "decoded_sentences", "teacher_entropy", "teacher_top1", "teacher_gold_nll",
           "data_complexity", "source_vocabulary", "teacher_greedy_bleu", "teacher_gold_bleu",
           "teacher_greedy_chrf", "teacher_gold_chrf", "teacher_beam_gain", "seconds"]


def build_parser():
    parser = ArgumentParser(prog="measure_advise_cells.py", description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.add_argument("--deen-data", default="work/advise/deen", metavar="DIR",
                        help="holds clean/ and NOISE-RATE/ (each with bin/); missing ones are prepared")
    parser.add_argument("--deen-raw", default=os.path.join(REPO, "data", "corpus", "deen"), metavar="DIR",
                        help="the built Debian corpus (default: data/corpus/deen)")
    parser.add_argument("--multi30k-data", default="work/multi30k/data/bin", metavar="DIR",
                        help="the Multi30k data-bin of recipes/multi30k.sh")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS), metavar="CELL",
                        help=f"cells to measure (default: all: {' '.join(CELLS)})")
    parser.add_argument("--work", default="work/advise/cells", metavar="DIR", help="per-cell JSON cache")
    parser.add_argument("--out", default="docs/advise/data_features.csv", metavar="CSV")
    parser.add_argument("--sizes-out", default="docs/advise/student_sizes.csv", metavar="CSV",
                        help="the students' parameter counts on each corpus's dictionaries")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def deen_data_bin(args, name, kind, rate):
    """The Debian cell's data-bin, prepared first as the study did where it is missing."""
    folder = os.path.join(args.deen_data, "clean" if not kind else f"{kind}-{rate}")
    if not os.path.isfile(os.path.join(folder, "bin", "dict.en.txt")):
        if not os.path.isfile(os.path.join(args.deen_raw, "train.de")):
            raise KDNMTError(f"{folder}/bin is missing and so is the built corpus {args.deen_raw!r}: "
                             "run `python -m data.build_corpus` first")
        from data.prepare import prepare

        prepare(args.deen_raw, folder, vocab=0, max_train=5000, noise=(kind, rate) if kind else None, seed=1,
                srcdict=os.path.join(DEEN_TEACHER, "dict.en.txt"), spm_model=os.path.join(DEEN_TEACHER, "spm.model"))
    return os.path.join(folder, "bin")


def csv_text(rows, columns):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def student_sizes(rows):
    """A row per study student: its parameters, counted as ``kd-nmt advise`` counts them."""
    from kd_nmt.advise.architecture import architecture_parameters

    out = []
    for corpus, archs in STUDENTS.items():
        cell = next((r for r in rows if r["corpus"] == corpus), None)
        if cell is None:
            continue
        for arch in archs:
            params = architecture_parameters(arch, cell["data_bin"], cell["source_lang"], cell["target_lang"])
            out.append({"corpus": corpus, "arch": arch, "size": arch.replace("transformer_kd_", ""),
                        "params": params, "teacher_params": cell["teacher_params"]})
    return out


def main(argv):
    args = build_parser().parse_args(argv)
    from kd_nmt.advise.features import measure
    from kd_nmt.checkpoint import install_fairseq_patches
    from kd_nmt.common.logging_setup import quiet_logging

    quiet_logging()
    install_fairseq_patches()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for name in args.cells:
        corpus, kind, rate = CELLS[name]
        cached = os.path.join(args.work, f"{name}.json")
        if not os.path.isfile(cached):
            if corpus == "deen":
                teacher, data_bin = os.path.join(DEEN_TEACHER, "model.pt"), deen_data_bin(args, name, kind, rate)
            else:
                teacher, data_bin = MULTI30K_TEACHER, args.multi30k_data
            measured = measure(os.path.relpath(teacher, REPO), data_bin, progress=not args.no_progress)
            atomic_write(cached, json.dumps(measured, indent=2) + "\n")
            print(f"{name}: measured in {sum(measured['seconds'].values()):.0f} s", flush=True)
        with open(cached, encoding="utf-8") as f:
            measured = json.load(f)
        rows.append({**measured, "data_cell": name, "corpus": corpus, "noise": kind, "noise_rate": rate,
                     "seconds": round(sum(measured["seconds"].values()), 1)})
    atomic_write(args.out, csv_text(rows, COLUMNS))
    sizes = student_sizes(rows)
    atomic_write(args.sizes_out, csv_text(sizes, SIZE_COLUMNS))
    print(f"wrote {args.out} ({len(rows)} cells) and {args.sizes_out} ({len(sizes)} students)")


if __name__ == "__main__":
    raise SystemExit(run_tool("measure_advise_cells.py", main))
