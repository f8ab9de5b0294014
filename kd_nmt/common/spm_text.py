"""Raw text to the pieces a model was trained on, as ``data/prepare.py`` prepared its data.

``data/prepare.py`` (and ``scripts/prepare_corpus.py``, which calls it) normalises each line with
sacremoses' ``MosesPunctNormalizer(lang)``, strips it, and encodes it with the corpus's joint
sentencepiece model (``sp.encode(line, out_type=str)``); ``encode_lines`` does the same (the
data tools import nothing from kd_nmt, so the two lines live in both places; a test holds them
equal). ``normalize="none"`` skips the normaliser, for data encoded without it.

Where the model is: data/prepare.py writes ``OUT/spm.model`` beside ``OUT/bin`` (the data-bin);
``scripts/ship_checkpoint.py`` writes ``spm.model`` beside the dictionaries. A data-bin does not
record its model otherwise; ``find_spm_model`` looks in those two places.
"""
import os

from kd_nmt.errors import KDNMTError

NORMALIZERS = ("moses", "none")
MODEL_NAME = "spm.model"
SPECIAL_PREFIX = "madeupword"  # fairseq pads dictionaries to a multiple of 8 with these


def find_spm_model(data_dir):
    """``DIR/spm.model`` or ``DIR/../spm.model`` for a data-bin (or shipped model) ``DIR``, else None."""
    for folder in (data_dir, os.path.dirname(os.path.abspath(data_dir))):
        path = os.path.join(folder, MODEL_NAME)
        if os.path.isfile(path):
            return path
    return None


def load_spm(path):
    """A ``SentencePieceProcessor``; one KDNMTError for a missing or unreadable model."""
    import sentencepiece as spm

    if not path or not os.path.isfile(path):
        raise KDNMTError(f"sentencepiece model not found: {path!r}")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:  # noqa: BLE001  (sentencepiece raises RuntimeError/OSError)
        raise KDNMTError(f"cannot read sentencepiece model {path!r}: {exc}") from None


def encode_lines(lines, spm_path, lang, normalize="moses"):
    """Each line normalised (``normalize``) and encoded to sentencepiece pieces: ``[[piece, ...]]``."""
    if normalize not in NORMALIZERS:
        raise KDNMTError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALIZERS)}")
    sp = load_spm(spm_path)
    if normalize == "moses":
        from sacremoses import MosesPunctNormalizer

        norm = MosesPunctNormalizer(lang=lang)
        lines = (norm.normalize(line).strip() for line in lines)
    return [sp.encode(line, out_type=str) for line in lines]


def symbols_outside_spm(dictionary, spm_path):
    """The dictionary's symbols (specials and fairseq's padding symbols aside) that are not pieces
    of the sentencepiece model: ``(unknown, n_symbols)``. A dictionary built from text this model
    encoded has none."""
    sp = load_spm(spm_path)
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    symbols = [s for s in dictionary.symbols[dictionary.nspecial:] if not s.startswith(SPECIAL_PREFIX)]
    return [s for s in symbols if s not in pieces], len(symbols)


def check_spm_matches(dictionary, dict_desc, spm_path):
    """One KDNMTError naming the first symbol of ``dictionary`` that ``spm_path`` cannot produce."""
    unknown, n = symbols_outside_spm(dictionary, spm_path)
    if unknown:
        raise KDNMTError(
            f"{len(unknown)} of the {n} symbols of {dict_desc} are not pieces of {spm_path} "
            f"(first: {unknown[0]!r}): give the sentencepiece model the checkpoint's data was encoded with"
        )
