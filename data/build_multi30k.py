"""Multi30k task 1 de-en (Elliott et al. 2016) from the files shipped in data/multi30k/raw/.

    python -m data.build_multi30k                 # -> data/corpus/multi30k
    python -m data.build_multi30k --out DIR [--force]

No network: the twelve gzip files are the official repository's (github.com/multi30k/dataset,
commit a3d2e0d, data/task1/raw/), byte for byte; data/multi30k/SHA256SUMS holds their sha256 and
every one is checked before anything is written — a missing or altered file is one error line
(exit 2). The output is the corpus layout scripts/prepare_corpus.py and the recipes' ``CORPUS=``
take: train.{de,en} (29,000), valid.{de,en} (the official val, 1,014), test_2016_flickr (1,000),
test_2017_flickr (1,000), test_2017_mscoco (461), test_2018_flickr (1,071), plus MANIFEST.json
(source commit, sha256, counts). The text is decompressed as it is: no normalisation, so the test
files are the references sacreBLEU scores against. It is written into a temporary folder renamed
into place: the output is whole or absent. A rerun with the same files is skipped (0.01 s).
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from data.kd_nmt_stdlib import report_errors

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "multi30k"
DEFAULT_OUT = HERE / "corpus" / "multi30k"
SOURCE_COMMIT = "a3d2e0d"
# official name -> our split name (fairseq-train validates on "valid")
SPLITS = {
    "train": "train",
    "val": "valid",
    "test_2016_flickr": "test_2016_flickr",
    "test_2017_flickr": "test_2017_flickr",
    "test_2017_mscoco": "test_2017_mscoco",
    "test_2018_flickr": "test_2018_flickr",
}
LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000,
         "test_2017_mscoco": 461, "test_2018_flickr": 1071}
LANGS = ("de", "en")


class BuildError(Exception):
    """One line for the user: what is wrong and what to do."""


def read_sums(shipped):
    path = shipped / "SHA256SUMS"
    if not path.is_file():
        raise BuildError(f"{path}: missing (restore it with `git checkout -- {path}`)")
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def verify(shipped):
    """``{file name: sha256}`` of the twelve shipped files, each checked against SHA256SUMS."""
    sums = read_sums(shipped)
    for split in SPLITS:
        for lang in LANGS:
            name = f"{split}.{lang}.gz"
            path = shipped / "raw" / name
            if name not in sums:
                raise BuildError(f"{shipped / 'SHA256SUMS'}: no line for {name}")
            if not path.is_file():
                raise BuildError(f"{path}: missing (restore it with `git checkout -- {path}`)")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != sums[name]:
                raise BuildError(
                    f"{path}: sha256 {digest[:12]}... is not the shipped {sums[name][:12]}... "
                    f"(the file was altered; restore it with `git checkout -- {path}`)"
                )
    return sums


def decompress(path, expected):
    """The text of one gzip file, its line count checked; a BOM or CR would change the text."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise BuildError(f"{path}: not a gzip file of UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) != expected:
        raise BuildError(f"{path}: {len(lines)} lines, Multi30k has {expected}")
    if text.startswith("\ufeff") or "\r" in text:
        raise BuildError(f"{path}: holds a BOM or CR, which the official files do not")
    return "".join(line + "\n" for line in lines)


def build(out=DEFAULT_OUT, shipped=None, force=False):
    """Write the corpus into ``out`` (whole or not at all); return its manifest."""
    start = time.time()
    shipped = Path(shipped or SHIPPED)
    sums = verify(shipped)
    out = Path(out)
    manifest_path = out / "MANIFEST.json"
    if not force and manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        done = old.get("sha256") == sums and all(
            (out / f"{ours}.{lang}").is_file() for ours in SPLITS.values() for lang in LANGS)
        if done:
            return old
    if out.exists() and not _replaceable(out):
        raise BuildError(f"{out} exists and is not a build of this corpus (no MANIFEST.json of one): "
                         "choose another --out, or delete it")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        manifest = _write(tmp, shipped, sums, start)
    except BaseException as exc:  # a full disk: no half-written folder stays
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (exc.filename is None or str(exc.filename).startswith(str(tmp))):
            exc.filename = str(out)  # (write_text's ENOSPC names no file; the .tmp is not the user's)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return manifest


def _replaceable(out):
    """Whether ``out`` may be replaced: an empty folder, or one this builder wrote (its manifest
    names the corpus). Anything else is the user's: it was deleted whole before."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return json.loads((out / "MANIFEST.json").read_text(encoding="utf-8")).get("corpus", "").startswith("Multi30k")
    except (OSError, ValueError, AttributeError):
        return False


def _write(tmp, shipped, sums, start):
    """The corpus files and MANIFEST.json into the folder ``tmp``, fsynced; the manifest."""
    counts = {}
    for split, ours in SPLITS.items():
        for lang in LANGS:
            text = decompress(shipped / "raw" / f"{split}.{lang}.gz", LINES[split])
            (tmp / f"{ours}.{lang}").write_text(text, encoding="utf-8")
            counts.setdefault(ours, {})[lang] = {"lines": LINES[split], "words": len(text.split())}
    manifest = {
        "corpus": "Multi30k task 1 (Elliott et al. 2016), de-en",
        "source": f"https://github.com/multi30k/dataset data/task1/raw/ at commit {SOURCE_COMMIT}",
        "terms": "non-commercial research and education; cite Elliott et al. 2016 (data/multi30k/README.md)",
        "splits": {ours: split for split, ours in SPLITS.items()},
        "counts": counts,
        "sha256": sums,
        "seconds": round(time.time() - start, 2),
    }
    (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    for name in os.listdir(tmp):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    return manifest


def main(argv=None):
    """Its status; an OSError (full disk, read-only) is one line ``build_multi30k: error: ...``."""
    return report_errors("build_multi30k", _main, argv)


def _main(argv=None):
    p = argparse.ArgumentParser(prog="build_multi30k", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = p.parse_args(argv)
    try:
        manifest = build(args.out, force=args.force)
    except BuildError as e:
        print(f"build_multi30k: error: {e}", file=sys.stderr)
        return 2
    c = manifest["counts"]
    print(f"multi30k -> {args.out}: " + ", ".join(f"{s} {c[s]['de']['lines']:,}" for s in c), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
