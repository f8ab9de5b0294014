"""Raw parallel text → sentencepiece pieces → fairseq data-bin (joined dictionary).

    python -m data.prepare --raw data/corpus/deen --out work/deen-8k --vocab 8000 \
        [--max-train N] [--noise dropout:0.1] [--seed 1]

Steps, each skipped when its output exists (delete the output directory to redo):
1. normalise punctuation with sacremoses (``MosesPunctNormalizer``, per language) — the text stays
   untokenised: sentencepiece does the segmentation;
2. train one joint sentencepiece unigram model on the train split (both languages);
3. encode every split to pieces (``OUT/tok/SPLIT.LANG``), optionally noising the train *source*
   first (``data.noise``, seeded) — the text-complexity axis of the study;
4. ``fairseq-preprocess --joined-dictionary`` into ``OUT/bin`` (no length filter: no line is lost).

Splits are the files ``RAW/{SPLIT}.{de,en}`` for SPLIT in train, valid, test_tech, test_ding, test
(whichever exist). ``OUT/bin`` is what ``fairseq-train``, ``kd-nmt relabel`` and ``kd-nmt bench`` read;
``OUT/spm.model`` detokenises hypotheses; ``OUT/raw/`` keeps the normalised references.
``prepare(..., src=, tgt=, splits=)`` takes other languages and split names:
``scripts/prepare_corpus.py`` uses it for any parallel corpus.
"""
import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from data.kd_nmt_stdlib import atomic_write, os_error_in, report_errors

SPLITS = ("train", "valid", "test_tech", "test_ding", "test")
SRC, TGT = "de", "en"


def read_lines(path):
    """The lines of a UTF-8 file, split where fairseq-preprocess splits them (universal newlines).

    ``str.splitlines`` also splits at \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029: one such
    character inside a line of a user's corpus would shift every later line of that side.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.startswith("\ufeff"):  # a byte-order mark would stay in line 1 of raw/, the bench reference
        print(f"prepare: note: {path}: removed the UTF-8 byte-order mark at its start", file=sys.stderr)
        text = text[1:]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start one
    return lines


def _normalise(raw, out, max_train, langs=(SRC, TGT), splits=SPLITS):
    from sacremoses import MosesPunctNormalizer

    out.mkdir(parents=True, exist_ok=True)
    for split in splits:
        if not (raw / f"{split}.{langs[0]}").exists():
            continue
        for lang in langs:
            dest = out / f"{split}.{lang}"
            if dest.exists():
                continue
            norm = MosesPunctNormalizer(lang=lang)
            lines = read_lines(raw / f"{split}.{lang}")
            if split == "train" and max_train:
                lines = lines[:max_train]
            atomic_write(dest, "".join(norm.normalize(x).strip() + "\n" for x in lines))
    return [s for s in splits if (out / f"{s}.{langs[0]}").exists()]


def _train_spm(norm, out, vocab, seed, langs=(SRC, TGT)):
    import sentencepiece as spm

    model = out / "spm.model"
    if model.exists():
        return model
    try:
        spm.SentencePieceTrainer.train(
            input=[str(norm / f"train.{lang}") for lang in langs],
            model_prefix=str(out / "spm.tmp"), vocab_size=vocab, model_type="unigram",
            character_coverage=1.0, input_sentence_size=2_000_000, shuffle_input_sentence=True,
            seed_sentencepiece_size=1_000_000, num_threads=os.cpu_count() or 1,
            hard_vocab_limit=False, minloglevel=2,
        )
        _check_spm(out / "spm.tmp.model", out / "spm.tmp.vocab")
    except BaseException as exc:
        for suffix in ("model", "vocab"):
            (out / f"spm.tmp.{suffix}").unlink(missing_ok=True)
        if isinstance(exc, RuntimeError):  # sentencepiece's errors (e.g. a folder it cannot write)
            raise PrepareError(f"sentencepiece training failed: {exc}") from None
        raise
    os.replace(out / "spm.tmp.vocab", out / "spm.vocab")
    os.replace(out / "spm.tmp.model", model)
    return model


def _check_spm(model, vocab):
    """An OSError (ENOSPC) or PrepareError if sentencepiece's files are not whole: it reports no
    write error, and on a full disk exited as if done with a cut-short model and an empty vocab."""
    import sentencepiece as spm

    try:
        pieces = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    except (OSError, RuntimeError):
        pieces = None
    if pieces is not None and vocab.read_bytes().count(b"\n") == pieces:
        return
    if os.statvfs(model.parent).f_bavail == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(model.with_name("spm.model")))
    raise PrepareError(f"sentencepiece wrote an incomplete {model} or {vocab}: prepare again")


def _encode(norm, tok, model, splits, noise, seed, langs=(SRC, TGT)):
    import sentencepiece as spm

    from data.noise import noise_lines

    sp = spm.SentencePieceProcessor(model_file=str(model))
    tok.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for lang in langs:
            dest = tok / f"{split}.{lang}"
            if dest.exists():
                continue
            lines = read_lines(norm / f"{split}.{lang}")
            if noise and split == "train" and lang == langs[0]:
                kind, rate = noise
                lines = noise_lines(lines, kind, rate, seed)
            atomic_write(dest, "".join(" ".join(sp.encode(x, out_type=str)) + "\n" for x in lines))


def _binarize(tok, bin_dir, splits, srcdict=None, langs=(SRC, TGT)):
    src, tgt = langs
    if (bin_dir / f"dict.{tgt}.txt").exists():
        return
    tmp = bin_dir.with_name(bin_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        str(Path(sys.executable).with_name("fairseq-preprocess")),
        "--source-lang", src, "--target-lang", tgt, "--trainpref", str(tok / "train"),
        "--destdir", str(tmp), "--workers", str(os.cpu_count() or 1),
    ]
    if srcdict:
        cmd += ["--srcdict", str(srcdict), "--joined-dictionary"]
    else:
        cmd += ["--joined-dictionary"]
    others = [s for s in splits if s != "train"]
    if others:
        cmd += ["--validpref", ",".join(str(tok / s) for s in others)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:  # its traceback, then check=True's: the disk's fault is one line
            exc = os_error_in(proc.stderr)
            if exc is not None:
                raise OSError(exc.errno, exc.strerror, str(bin_dir))
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise PrepareError(f"fairseq-preprocess failed (exit {proc.returncode}): {last}")
        # fairseq names extra valid prefixes valid1, valid2...: give them their split names back
        for i, split in enumerate(others):
            name = "valid" if i == 0 else f"valid{i}"
            for f in tmp.glob(f"{name}.{src}-{tgt}.*"):
                f.rename(tmp / f.name.replace(name + ".", split + ".", 1))
        os.replace(tmp, bin_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class PrepareError(Exception):
    """One line for the user: what went wrong and what to do."""


class PrepareMismatch(PrepareError):
    """OUT holds (part of) a corpus prepared from other inputs or options."""


def _sha256(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config(raw, vocab, max_train, noise, seed, srcdict, spm_model, langs, splits):
    """What OUT is made from: the options and the sha256 of every input file."""
    inputs = {f"{split}.{lang}": _sha256(raw / f"{split}.{lang}")
              for split in splits for lang in langs if (raw / f"{split}.{lang}").exists()}
    for name, path in (("srcdict", srcdict), ("spm_model", spm_model)):
        if path:
            inputs[name] = _sha256(path)
    return {"raw": str(raw), "vocab": vocab, "max_train": max_train,
            "noise": list(noise) if noise else None, "seed": seed, "langs": list(langs), "inputs": inputs}


def _check_same(out, config):
    """Refuse an OUT begun or finished from other inputs: its steps would be skipped and the old
    corpus kept under the new counts. ``prepare.json`` records a finished run, ``prepare.start.json``
    one begun; the raw path may move (only the file contents and options must match)."""
    for name in ("prepare.json", "prepare.start.json"):
        path = out / name
        if not path.exists():
            continue
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise PrepareMismatch(f"{path} is unreadable: delete {out} and prepare again") from None
        keys = [k for k in config if k != "raw" and k in old]  # a prepare.json of before has no inputs
        if "noise" in old and old["noise"] is not None:
            old["noise"] = list(old["noise"])
        differ = [k for k in keys if old[k] != config[k]]
        if differ:
            what = ", ".join(f"{k} {old[k]!r} -> {config[k]!r}" if k != "inputs" else
                             "input files " + ", ".join(sorted(n for n in set(old[k]) | set(config[k])
                                                                if old[k].get(n) != config[k].get(n)))
                             for k in differ)
            raise PrepareMismatch(
                f"{out} was prepared from other inputs or options ({what}); its steps would be skipped "
                f"and the old corpus kept: delete {out} or choose another --out")
        return


def prepare(raw, out, vocab=8000, max_train=0, noise=None, seed=1, srcdict=None, spm_model=None,
            src=SRC, tgt=TGT, splits=SPLITS):
    """Build ``out/{raw,spm.model,tok,bin}`` from the raw corpus directory ``raw``; returns ``out/bin``.

    ``splits``: the split names to look for (``RAW/{split}.{src}``), train first. A PrepareMismatch
    if ``out`` was begun or finished from other input files or options (nothing is changed then).
    """
    raw, out, langs = Path(raw), Path(out), (src, tgt)
    if not (raw / f"train.{src}").exists():
        sys.exit(f"prepare: error: no {raw}/train.{src} — build the corpus first (make data)")
    config = _config(raw, vocab, max_train, noise, seed, srcdict, spm_model, langs, splits)
    _check_same(out, config)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "prepare.json").exists():  # (a cut-short one would refuse every rerun)
        atomic_write(out / "prepare.start.json", json.dumps(config, indent=2))
    splits = _normalise(raw, out / "raw", max_train, langs, splits)
    if spm_model:
        model = out / "spm.model"
        if not model.exists():
            atomic_write(model, Path(spm_model).read_bytes())
    else:
        model = _train_spm(out / "raw", out, vocab, seed, langs)
    _encode(out / "raw", out / "tok", model, splits, noise, seed, langs)
    _binarize(out / "tok", out / "bin", splits, srcdict, langs)
    atomic_write(out / "prepare.json",
                 json.dumps({**config, "splits": splits, "srcdict": str(srcdict) if srcdict else None}, indent=2))
    (out / "prepare.start.json").unlink(missing_ok=True)
    return out / "bin"


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", default="data/corpus/deen")
    p.add_argument("--out", required=True)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--max-train", type=int, default=0, help="keep the first N train pairs (0 = all)")
    p.add_argument("--noise", default=None, help="KIND:RATE noise on the train source, e.g. dropout:0.1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spm-model", default=None, help="reuse this sentencepiece model (no training)")
    p.add_argument("--srcdict", default=None, help="reuse this (joined) fairseq dictionary")
    a = p.parse_args(argv)
    noise = None
    if a.noise:
        kind, rate = a.noise.split(":")
        noise = (kind, float(rate))
    try:
        print(prepare(a.raw, a.out, a.vocab, a.max_train, noise, a.seed, a.srcdict, a.spm_model))
    except PrepareError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    """``python -m data.prepare``: its status; an OSError (full disk, read-only) is one line."""
    return report_errors("prepare", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
