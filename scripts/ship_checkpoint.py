#!/usr/bin/env python3
"""Ship a trained model: (averaged) weights only, in float16, with everything needed to use it.

    python scripts/ship_checkpoint.py --checkpoints RUN/checkpoint_*_5500.pt RUN/checkpoint_*_6000.pt \
        --data work/teacher/data --out models/teacher-deen --note "training command ..."

    python scripts/ship_checkpoint.py --run RUN --average 5 --data ... --out ...   # RUN's last 5
    python scripts/ship_checkpoint.py --verify models/teacher-deen     # checksums only

Writes into ``--out``:

* ``model.pt`` — a fairseq checkpoint (``cfg`` + ``model``) holding the element-wise mean of the
  given checkpoints' weights (checkpoint averaging, Vaswani et al. 2017), cast to float16, and no
  optimizer state: a third of a float32 checkpoint with Adam's moments. fairseq casts the weights
  back to the model's float32 parameters on load (``load_state_dict`` copies), so stock
  ``fairseq-generate``, ``ct2-fairseq-converter`` and ``--teacher-path`` load it as any other
  checkpoint. ``cfg.task.data`` points at ``--out`` itself, which holds the dictionaries.
* ``spm.model``, ``dict.de.txt``, ``dict.en.txt`` — copied from ``--data``: students must be
  prepared with them (``data/prepare.py --spm-model ... --srcdict ...``).
* ``MANIFEST.json`` — sha256 of every file, the averaged checkpoints, parameter count, ``--note``
  and any ``--info KEY=VALUE`` (the recipe records BLEU, wall time, corpus and package versions).

``--update DIR --info KEY=VALUE ...`` adds entries to an existing MANIFEST.json (a value that parses
as JSON is stored as JSON: the recipe adds the shipped model's scores after benchmarking it); the
files and their sha256 are untouched.

``--verify DIR`` recomputes every sha256 and exits 1 with one line naming the first file that
differs (recipes call it before they use a shipped model).
"""
import json
import os
import sys

import tool_common  # noqa: F401  (puts the repository on sys.path)
from tool_common import run_tool

from kd_nmt.common.args import ArgumentParser
from kd_nmt.common.atomic import atomic_copy, atomic_torch_save, atomic_write
from kd_nmt.common.hashing import sha256_file as sha256
from kd_nmt.errors import KDNMTError

FILES = ("model.pt", "spm.model", "dict.de.txt", "dict.en.txt")


def load(path):
    """The checkpoint ``path`` as saved (a file the user named: trusted); a cut-short or foreign
    file is one KDNMTError naming it (torch's RuntimeError was a traceback)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (truncated, not a torch file, ...)
        raise KDNMTError(f"cannot read checkpoint {path!r}: {type(exc).__name__}: {str(exc)[:120]}. "
                         "Is it a complete fairseq checkpoint?") from None


def average(paths):
    """The first checkpoint's state with ``model`` replaced by the float64 mean over ``paths``."""
    first = None
    total = None
    for path in paths:
        state = load(path)
        weights = state["model"]
        if total is None:
            first, total = state, {k: v.double().clone() for k, v in weights.items()}
        else:
            if weights.keys() != total.keys():
                sys.exit(f"ship_checkpoint: error: {path} has other parameters than {paths[0]}")
            for k, v in weights.items():
                if v.shape != total[k].shape:
                    sys.exit(f"ship_checkpoint: error: {k} is {tuple(v.shape)} in {path} but "
                             f"{tuple(total[k].shape)} in {paths[0]}: not the same architecture")
                total[k] += v.double()
    first["model"] = {k: (v / len(paths)) for k, v in total.items()}
    return first


def tied_names(weights):
    """``{name: name of the first tensor sharing its storage}`` (tied embeddings / output layer)."""
    first_of = {}
    tied = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        tied[name] = first_of.setdefault(key, name)
    return tied


def ship(checkpoints, data, out, note, info):
    import torch
    from omegaconf import open_dict

    os.makedirs(out, exist_ok=True)
    tied = tied_names(load(checkpoints[0])["model"])
    state = average(checkpoints)
    floats = {k: v.to(torch.float16) for k, v in state["model"].items()}
    # the shared embedding matrix is one tensor under three names: save it once (torch.save
    # writes a storage once however many names point to it)
    floats = {k: floats[tied[k]] for k in floats}
    cfg = state["cfg"]  # fairseq stores it as a plain dict (or a DictConfig)
    if isinstance(cfg, dict):
        cfg["task"]["data"] = os.path.relpath(out)
    else:
        with open_dict(cfg):
            cfg.task.data = os.path.relpath(out)
    # keep fairseq's bookkeeping (optimizer_history, extra_state: its loader upgrades states
    # that lack them), drop the optimizer's moments (two float32 copies of the weights)
    shipped = {k: v for k, v in state.items() if k != "last_optimizer_state"}
    shipped.update(cfg=cfg, model=floats)
    shipped.setdefault("extra_state", {})["kd_nmt_shipped"] = {"averaged": [os.path.basename(p) for p in checkpoints]}
    atomic_torch_save(shipped, os.path.join(out, "model.pt"))  # (torch.save: a full disk was a traceback)
    for name in FILES[1:]:
        src = os.path.join(data, name) if name == "spm.model" else os.path.join(data, "bin", name)
        atomic_copy(src, os.path.join(out, name))
    manifest = {
        "files": {name: sha256(os.path.join(out, name)) for name in FILES},
        "averaged_checkpoints": [os.path.basename(p) for p in checkpoints],
        "parameters": int(sum(floats[k].numel() for k in set(tied.values()) if floats[k].numel() > 1)),
        "dtype": "float16 (weights only; loads into float32 models)",
        "note": note,
    }
    manifest.update(parse_info(info))
    write_manifest(out, manifest)
    size = os.path.getsize(os.path.join(out, "model.pt")) / 2**20
    print(f"ship_checkpoint: {out}/model.pt ({size:.1f} MiB, mean of {len(checkpoints)} checkpoints)")


def parse_info(items):
    """``KEY=VALUE`` strings as a dict; a value that parses as JSON (a number, an object) is kept as JSON."""
    parsed = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def write_manifest(out, manifest):
    atomic_write(os.path.join(out, "MANIFEST.json"), json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def update(out, info):
    path = os.path.join(out, "MANIFEST.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"ship_checkpoint: error: {path} unreadable ({exc}): ship the model first", file=sys.stderr)
        return 1
    manifest.update(parse_info(info))
    write_manifest(out, manifest)
    return 0


def verify(out):
    try:
        with open(os.path.join(out, "MANIFEST.json"), encoding="utf-8") as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"ship_checkpoint: error: {out}/MANIFEST.json unreadable ({exc})", file=sys.stderr)
        return 1
    for name, digest in files.items():
        path = os.path.join(out, name)
        if not os.path.exists(path):
            print(f"ship_checkpoint: error: {path} is missing", file=sys.stderr)
            return 1
        if sha256(path) != digest:
            print(f"ship_checkpoint: error: {path} does not match its sha256 in MANIFEST.json "
                  "(changed or truncated; git checkout it, or retrain with recipes/teacher.sh)", file=sys.stderr)
            return 1
    return 0


def main(argv=None):
    p = ArgumentParser(prog="ship_checkpoint", description=__doc__)
    p.add_argument("--checkpoints", nargs="+", help="checkpoints to average (one = no averaging)")
    p.add_argument("--run", metavar="DIR", help="instead of --checkpoints: the last --average interval "
                   "checkpoints (checkpoint_E_U.pt, by updates U) of this --save-dir")
    p.add_argument("--average", type=int, default=1, metavar="N", help="with --run: how many (default 1)")
    p.add_argument("--data", help="data/prepare.py's output dir the model was trained on")
    p.add_argument("--out", help="directory to write")
    p.add_argument("--note", default="", help="free text stored in MANIFEST.json (e.g. the training command)")
    p.add_argument("--info", nargs="*", default=[], metavar="KEY=VALUE", help="more MANIFEST.json entries")
    p.add_argument("--verify", metavar="DIR", help="check DIR's files against its MANIFEST.json")
    p.add_argument("--update", metavar="DIR", help="add the --info entries to DIR's MANIFEST.json")
    a = p.parse_args(argv)
    if a.verify:
        return verify(a.verify)
    if a.update:
        return update(a.update, a.info)
    if a.run:
        from learning_curve import interval_checkpoints

        found = interval_checkpoints(a.run)
        if a.average < 1 or not found:
            p.error(f"--run {a.run}: no checkpoint_E_U.pt there (train with --save-interval-updates), "
                    "or --average below 1")
        a.checkpoints = [path for _, path in found[-a.average:]]
    if not (a.checkpoints and a.data and a.out):
        p.error("--checkpoints (or --run), --data and --out are required (or --verify DIR)")
    for path in a.checkpoints:
        if not os.path.isfile(path):
            p.error(f"no checkpoint {path}")
    ship(a.checkpoints, a.data, a.out, a.note, a.info)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool("ship_checkpoint", main))
