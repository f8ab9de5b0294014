"""A fairseq checkpoint converted to CTranslate2 once, cached next to it (relabel, bench, export).

Conversion uses ``ctranslate2.converters.FairseqConverter`` (trusted checkpoint: unsafe
deserialization allowed) into ``T.pt.ct2-QUANT/`` by default, with a stamp (``kd_nmt_stamp.json``)
whose key is the checkpoint's sha256, the quantization, the dictionaries' sha256 and the
ctranslate2 version: a copied or touched checkpoint reuses its conversion, any change of content
converts again. The conversion is written to a temporary directory and renamed into place, so
concurrent shards and killed runs never leave a half-converted model behind.

No torch or fairseq import here except inside the converter, so a CTranslate2-only process
(``kd-nmt bench --deploy``'s worker) can import the names.
"""
import json
import os
import shutil

from kd_nmt.common.hashing import sha256_file
from kd_nmt.errors import KDNMTError

STAMP = "kd_nmt_stamp.json"
QUANTIZATIONS = (
    "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)
# the stamp fields that decide whether a conversion is still valid (the rest is information)
STAMP_KEY = ("sha256", "quantization", "ctranslate2", "source_dict", "target_dict")


def default_model_dir(checkpoint, quantization):
    return f"{checkpoint}.ct2-{quantization}"


def stamp_for(checkpoint, data_bin, source_lang, target_lang, quantization):
    import ctranslate2

    return {
        "checkpoint": os.path.abspath(checkpoint),
        "size": os.path.getsize(checkpoint),
        "sha256": sha256_file(checkpoint),
        "quantization": quantization,
        "ctranslate2": ctranslate2.__version__,
        "source_dict": sha256_file(os.path.join(data_bin, f"dict.{source_lang}.txt")),
        "target_dict": sha256_file(os.path.join(data_bin, f"dict.{target_lang}.txt")),
    }


def read_stamp(model_dir):
    try:
        with open(os.path.join(model_dir, STAMP), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _same_key(a, b):
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in STAMP_KEY)


def check_model_dir_writable(model_dir, fix="choose another place with --ct2-dir"):
    """Raise a KDNMTError (before any work) if ``model_dir`` can neither be read nor created."""
    parent = os.path.dirname(os.path.abspath(model_dir))
    if os.path.isdir(model_dir) or os.access(parent, os.W_OK):
        return
    raise KDNMTError(
        f"cannot create the CTranslate2 model directory {model_dir!r} (its folder is not "
        f"writable); {fix}"
    )


def ensure_converted(checkpoint, data_bin, source_lang, target_lang, quantization, model_dir,
                     log=None, fallback="Use --backend fairseq for this checkpoint"):
    """Convert ``checkpoint`` into ``model_dir`` unless an up-to-date conversion is there.

    Returns ``(model_dir, converted)``.
    """
    stamp = stamp_for(checkpoint, data_bin, source_lang, target_lang, quantization)
    if _same_key(read_stamp(model_dir), stamp):
        return model_dir, False
    from ctranslate2.converters import FairseqConverter

    if log:
        log(f"converting {checkpoint} to CTranslate2 ({quantization}) -> {model_dir}")
    tmp = f"{model_dir.rstrip(os.sep)}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        converter = FairseqConverter(
            checkpoint, data_bin, source_lang=source_lang, target_lang=target_lang,
            unsafe_deserialization=True,  # our own, trusted checkpoint (see kd_nmt.checkpoint)
        )
        converter.convert(tmp, quantization=quantization, force=True)
        with open(os.path.join(tmp, STAMP), "w", encoding="utf-8") as f:
            json.dump(stamp, f, indent=1)
    except (KDNMTError, OSError) as exc:  # an OSError is the disk's (full, read-only), not the checkpoint's
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (exc.filename is None or str(exc.filename).startswith(tmp)):
            exc.filename, exc.filename2 = model_dir, None  # (the temporary was named, or nothing)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KDNMTError(
            f"CTranslate2 cannot convert {checkpoint!r}: {type(exc).__name__}: {exc}. {fallback}"
        ) from None
    if os.path.isdir(model_dir):  # stale conversion
        shutil.rmtree(model_dir, ignore_errors=True)
    try:
        os.rename(tmp, model_dir)
    except OSError:  # a concurrent shard renamed its conversion first
        shutil.rmtree(tmp, ignore_errors=True)
        if not _same_key(read_stamp(model_dir), stamp):
            raise KDNMTError(f"cannot write the CTranslate2 model to {model_dir!r}") from None
    return model_dir, True


def directory_size(path):
    """Bytes of the files directly in ``path`` (a CTranslate2 model directory is flat)."""
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
               if os.path.isfile(os.path.join(path, n)))
