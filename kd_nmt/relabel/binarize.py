"""From relabeled text to training data: a data-bin line-aligned with the gold one.

``fairseq-preprocess`` binarizes (train source, relabeled target) with the *gold* data-bin's
dictionaries (``--srcdict``/``--tgtdict``), without any length filter, so sentence *i* of the new
train split is sentence *i* of the gold train split. The gold data-bin's other splits
(valid, test, ...) are hard-linked (copied across file systems) next to it, and its dictionary
files are copied over, so the result is directly trainable (``fairseq-train NEW ...``).

The line counts are verified after binarizing: source, target, input text and the gold train
split must all agree, else a KDNMTError and nothing is left at the destination. Two layouts
change the expected count on purpose, and are then stated, not guessed: ``repeat`` N (each gold
source line N times in a row: ``--keep-nbest N``) and ``extra_lines`` M (M more pairs after the
gold ones, e.g. relabeled monolingual text): ``gold × N + M`` lines. The work is
done in ``DEST.tmp.PID`` and renamed into place at the end.

Also the sub-command ``kd-nmt relabel binarize`` (for sharded runs: ``cat`` the shards first).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.data_bin import binarized_files, dictionary_path, infer_languages
from kd_nmt.common.lines import TextFile
from kd_nmt.common.logging_setup import status
from kd_nmt.errors import KDNMTError, os_error_in, unwritable


def _split_sizes(prefix):
    """Sentence lengths of a binarized file ``prefix`` (.bin/.idx), or None if absent."""
    if not os.path.isfile(prefix + ".idx"):
        return None
    from fairseq.data import data_utils

    dataset = data_utils.load_indexed_dataset(prefix, None, dataset_impl=None)
    if dataset is None:
        return None
    return [int(s) for s in dataset.sizes]


def check_destdir(destdir):
    """Raise before any work if ``destdir`` cannot become a fresh data-bin."""
    if os.path.exists(destdir) and not (os.path.isdir(destdir) and not os.listdir(destdir)):
        raise KDNMTError(
            f"--binarize-to directory {destdir!r} already exists and is not empty; "
            "delete it or choose another"
        )
    parent = os.path.dirname(os.path.abspath(destdir))
    problem = unwritable(parent)  # (was "is not a writable directory" for a file there too)
    if problem:
        raise KDNMTError(f"cannot create {destdir!r}: {parent!r} {problem}")


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def binarize(data_bin, source_lang, target_lang, source_file, target_file, destdir,
             workers=1, expected_lines=None, log=None, repeat=1, extra_lines=0):
    """Binarize (source_file, target_file) as the train split of a new data-bin ``destdir``.

    ``repeat``/``extra_lines``: the train split holds each gold line ``repeat`` times in a row,
    then ``extra_lines`` other lines (module docstring). Returns a summary dict (counts, linked
    splits). Raises KDNMTError on any count mismatch.
    """
    log = log or status("relabel")
    check_destdir(destdir)
    src, tgt = source_lang, target_lang
    parent = os.path.dirname(os.path.abspath(destdir))
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(destdir))}.tmp.{os.getpid()}")
    text_dir = tempfile.mkdtemp(prefix=".relabel-text.", dir=parent)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.symlink(os.path.abspath(source_file), os.path.join(text_dir, f"train.{src}"))
        os.symlink(os.path.abspath(target_file), os.path.join(text_dir, f"train.{tgt}"))
        cmd = [
            sys.executable, "-m", "fairseq_cli.preprocess",
            "--source-lang", src, "--target-lang", tgt,
            "--trainpref", os.path.join(text_dir, "train"), "--destdir", tmp,
            "--srcdict", dictionary_path(data_bin, src),
            "--tgtdict", dictionary_path(data_bin, tgt),
            "--workers", str(max(1, int(workers))),
        ]
        log(f"binarizing {source_file} + {target_file} with the dictionaries of {data_bin}")
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
        if proc.returncode != 0:
            exc = os_error_in(proc.stderr)  # a full disk: the disk's one line, not its traceback
            if exc is not None:
                raise OSError(exc.errno, exc.strerror, destdir)
            raise KDNMTError(
                f"fairseq-preprocess failed (exit {proc.returncode}): "
                + " | ".join(proc.stderr.strip().splitlines()[-5:])
            )
        n_src = _split_sizes(os.path.join(tmp, f"train.{src}-{tgt}.{src}"))
        n_tgt = _split_sizes(os.path.join(tmp, f"train.{src}-{tgt}.{tgt}"))
        gold = _split_sizes(os.path.join(data_bin, f"train.{src}-{tgt}.{src}"))
        counts = {
            "source": None if n_src is None else len(n_src),
            "target": None if n_tgt is None else len(n_tgt),
        }
        if expected_lines is not None:
            counts["text lines"] = expected_lines
        if gold is not None:
            layout = (f" x {repeat}" if repeat != 1 else "") + (f" + {extra_lines}" if extra_lines else "")
            counts[f"gold train{layout}"] = len(gold) * repeat + extra_lines
            gold = [size for size in gold for _ in range(repeat)]
        if None in counts.values() or len(set(counts.values())) != 1:
            raise KDNMTError(
                "binarized line counts differ: "
                + ", ".join(f"{k} {v}" for k, v in counts.items())
                + f"; nothing was written to {destdir!r}"
            )
        # sentence lengths as a cheap check that the source is the gold train source
        source_matches_gold = gold is not None and gold == n_src[:len(gold)]
        if gold is not None and not source_matches_gold:
            log("note: the binarized source's sentence lengths differ from the gold train "
                "source's (same line count); is --input the gold train source?")
        # the gold dictionaries, byte for byte, and its other splits
        for lang in (src, tgt):
            shutil.copyfile(dictionary_path(data_bin, lang), dictionary_path(tmp, lang))
        linked = set()
        for side in binarized_files(data_bin):
            if side.split != "train" and {side.a, side.b} == {src, tgt}:
                for ext in (".bin", ".idx"):
                    name = os.path.basename(side.prefix) + ext
                    _link_or_copy(side.prefix + ext, os.path.join(tmp, name))
                linked.add(side.split)
        summary = {
            "source_file": os.path.abspath(source_file),
            "target_file": os.path.abspath(target_file),
            "gold_data_bin": os.path.abspath(data_bin),
            "languages": [src, tgt],
            "train_sentences": counts["source"],
            "source_lengths_match_gold": source_matches_gold if gold is not None else None,
            "repeat": repeat, "extra_lines": extra_lines,
            "other_splits": sorted(linked),
        }
        with open(os.path.join(tmp, "relabel.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        if os.path.isdir(destdir):
            os.rmdir(destdir)  # empty (check_destdir)
        os.rename(tmp, destdir)
    except OSError as exc:  # a full disk while copying into DEST.tmp.PID: name DEST, not "(no file)"
        if exc.filename is None or str(exc.filename).startswith(tmp):
            exc.filename, exc.filename2 = destdir, None
        raise
    finally:
        shutil.rmtree(text_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    aligned = "line-aligned with the gold train split"
    if repeat != 1:
        aligned = f"each gold train line {repeat} times in a row"
    if extra_lines:
        aligned += f", then {extra_lines} more"
    log(f"binarized {summary['train_sentences']} train sentences into {destdir} "
        f"({aligned}; also linked: {', '.join(summary['other_splits']) or 'none'})")
    return summary


BINARIZE_EXAMPLES = """
Binarizes SOURCE (the train source) + TARGET (its relabeled translation, e.g. the cat of the
shard outputs of `kd-nmt relabel`) with the dictionaries of the gold --data-bin, checks that
every count agrees with the gold train split, and adds the gold valid/test splits.

example:
  cat train.kd.en.0 train.kd.en.1 > train.kd.en
  kd-nmt relabel binarize --data-bin data-bin --source tok/train.de --target train.kd.en \\
      --destdir data-bin-kd

  # top-4 hypotheses per source (relabel --keep-nbest 4), then 3000 relabeled monolingual pairs
  cat train.nbest4.de mono.nbest4.de > all.de; cat train.nbest4.en mono.nbest4.en > all.en
  kd-nmt relabel binarize --data-bin data-bin --source all.de --target all.en \\
      --repeat 4 --extra-lines 12000 --destdir data-bin-kd-mono
"""


def main(argv):
    p = ArgumentParser(
        prog="kd-nmt relabel binarize",
        description="Binarize relabeled text into a data-bin aligned with the gold one.",
        epilog=BINARIZE_EXAMPLES,
    )
    p.add_argument("--data-bin", required=True, help="the gold data-bin (dictionaries, valid/test)")
    p.add_argument("--source", required=True, help="train source text (token space)")
    p.add_argument("--target", required=True, help="relabeled train target text (token space)")
    p.add_argument("--destdir", required=True, help="new data-bin (must not exist)")
    p.add_argument("--source-lang", default=None)
    p.add_argument("--target-lang", default=None)
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="each gold source line is there N times in a row (relabel --keep-nbest N)")
    p.add_argument("--extra-lines", type=int, default=0, metavar="M",
                   help="M pairs after the gold ones (e.g. relabeled monolingual text)")
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = p.parse_args(argv)
    check_minimums(("--repeat", args.repeat, 1), ("--extra-lines", args.extra_lines, 0))
    src, tgt = infer_languages(args.data_bin, args.source_lang, args.target_lang)
    n_src = len(TextFile(args.source, "--source"))
    n_tgt = len(TextFile(args.target, "--target"))
    if n_src != n_tgt:
        raise KDNMTError(f"--source has {n_src} lines but --target has {n_tgt}")
    check_destdir(args.destdir)
    binarize(args.data_bin, src, tgt, args.source, args.target, args.destdir,
             workers=args.workers, expected_lines=n_src, repeat=args.repeat,
             extra_lines=args.extra_lines)
    return 0
