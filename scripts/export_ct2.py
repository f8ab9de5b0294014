#!/usr/bin/env python3
"""Export a student (any fairseq translation checkpoint) to CTranslate2, ready to ship.

OUT receives the CTranslate2 model (model.bin, config.json, vocabulary), the sentencepiece
model the student was trained with (spm.model) and manifest.json: where the model came from
(checkpoint path and sha256, quantization, the dictionaries' and spm.model's sha256, the
ctranslate2 / fairseq / torch versions) and the sha256 of every file in OUT.

Before converting, the checkpoint's embedding tables must have as many rows as the given
dictionaries, the dictionaries must equal the ones in the checkpoint's training data directory
(when that still exists) and every dictionary symbol must be a piece of the sentencepiece
model; otherwise one line names the mismatch and the exit status is 2. A rerun with the same
inputs only rewrites the manifest. OUT must be new or an earlier export.

example:
  python scripts/export_ct2.py --checkpoint work/quickstart/students/small_d2/word_kd/checkpoint_best.pt \\
      --data work/quickstart/data --out models/student-ct2 --quantization int8

  # then, without fairseq or torch (the text normalised as data/prepare.py did it):
  import ctranslate2, sentencepiece as spm
  from sacremoses import MosesPunctNormalizer
  sp = spm.SentencePieceProcessor(model_file="models/student-ct2/spm.model")
  translator = ctranslate2.Translator("models/student-ct2")
  pieces = sp.encode(MosesPunctNormalizer(lang="de").normalize("Klicken Sie auf OK."), out_type=str)
  print(sp.decode(translator.translate_batch([pieces])[0].hypotheses[0]))

The checkpoint is unpickled to convert it: export trusted checkpoints only.
"""
import datetime
import json
import os
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_copy, atomic_write
from kd_nmt.common.hashing import sha256_file
from kd_nmt.errors import KDNMTError

PROG = "export_ct2"
MANIFEST = "manifest.json"


def check_vocabulary(checkpoint, state, dict_paths, spm_path, langs):
    """One KDNMTError if ``state`` was not trained with these dictionaries and this spm model.

    ``dict_paths``: the ``(source, target)`` ``dict.LANG.txt`` files of ``langs``.
    """
    from kd_nmt.checkpoint import checkpoint_vocab_sizes
    from kd_nmt.common.dictionaries import checkpoint_dictionaries, describe_difference, load_dictionary
    from kd_nmt.common.spm_text import check_spm_matches

    given = [load_dictionary(path) for path in dict_paths]
    trained = checkpoint_dictionaries(state, langs)
    for side, path, ours, theirs, rows in zip(
        ("source", "target"), dict_paths, given, trained, checkpoint_vocab_sizes(state)
    ):
        if rows is not None and rows != len(ours):
            raise KDNMTError(
                f"{checkpoint!r} has a {side} embedding table of {rows} rows but {path} has "
                f"{len(ours)} symbols: give the data-bin the checkpoint was trained on"
            )
        detail = describe_difference(ours, theirs, ("given", "checkpoint")) if theirs is not None else ""
        if detail:
            raise KDNMTError(
                f"{path} is not the {side} dictionary {checkpoint!r} was trained with; {detail}: "
                "give the data-bin the checkpoint was trained on"
            )
    for path, dictionary in zip(dict_paths, given):
        check_spm_matches(dictionary, path, spm_path)


def check_out_dir(out):
    """Refuse to convert into a non-empty directory that is not an earlier export (it is replaced)."""
    from kd_nmt.common.ct2_conversion import STAMP

    earlier = os.path.isfile(os.path.join(out, STAMP))
    if os.path.exists(out) and not earlier and (not os.path.isdir(out) or os.listdir(out)):
        raise KDNMTError(f"--out {out!r} exists and is not an earlier export: choose a new directory")


def write_manifest(out, checkpoint, quantization, dict_paths, spm_path):
    import ctranslate2
    import fairseq
    import torch

    files = {name: sha256_file(os.path.join(out, name)) for name in sorted(os.listdir(out)) if name != MANIFEST}
    manifest = {
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "quantization": quantization,
        "dictionaries": {os.path.basename(p): {"path": os.path.abspath(p), "sha256": sha256_file(p)}
                         for p in dict_paths},
        "spm_model": {"path": os.path.abspath(spm_path), "sha256": sha256_file(spm_path)},
        "versions": {"ctranslate2": ctranslate2.__version__, "fairseq": fairseq.__version__,
                     "torch": torch.__version__},
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    atomic_write(os.path.join(out, MANIFEST), json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv):
    from kd_nmt.common.ct2_conversion import QUANTIZATIONS

    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--checkpoint", required=True, help="the fairseq checkpoint to export")
    p.add_argument("--data", help="data/prepare.py's or scripts/prepare_corpus.py's output: DATA/bin, DATA/spm.model")
    p.add_argument("--data-bin", help="the dictionaries' directory (default DATA/bin)")
    p.add_argument("--spm", "--spm-model", dest="spm", help="the sentencepiece model (default DATA/spm.model)")
    p.add_argument("--out", required=True, help="output directory (new, or an earlier export)")
    p.add_argument("--quantization", default="int8", choices=QUANTIZATIONS, help="weight type (default int8)")
    p.add_argument("--source-lang", default="de", help="source language (default de)")
    p.add_argument("--target-lang", default="en", help="target language (default en)")
    a = p.parse_args(argv)
    data_bin = a.data_bin or (a.data and os.path.join(a.data, "bin"))
    spm_path = a.spm or (a.data and os.path.join(a.data, "spm.model"))
    if not data_bin or not spm_path:
        p.error("give --data, or --data-bin and --spm")
    dict_paths = [os.path.join(data_bin, f"dict.{lang}.txt") for lang in (a.source_lang, a.target_lang)]
    for path in (*dict_paths, spm_path):
        if not os.path.isfile(path):
            raise KDNMTError(f"file not found: {path!r}")
    check_out_dir(a.out)

    from kd_nmt.checkpoint import load_checkpoint
    from kd_nmt.common.ct2_conversion import ensure_converted

    state = load_checkpoint(a.checkpoint)
    check_vocabulary(a.checkpoint, state, dict_paths, spm_path, (a.source_lang, a.target_lang))
    del state
    ensure_converted(a.checkpoint, data_bin, a.source_lang, a.target_lang, a.quantization, a.out,
                     log=lambda message: print(f"{PROG}: {message}", file=sys.stderr))
    atomic_copy(spm_path, os.path.join(a.out, "spm.model"))
    write_manifest(a.out, a.checkpoint, a.quantization, dict_paths, spm_path)
    size = os.path.getsize(os.path.join(a.out, "model.bin")) / 2**20
    print(f"{PROG}: {a.checkpoint} -> {a.out} ({a.quantization}, model.bin {size:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
