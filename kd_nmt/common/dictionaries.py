"""fairseq dictionaries: where two differ, and which ones a checkpoint was trained with.

A mismatch error names both sizes and the first differing symbol, so the user sees at once
whether a dictionary was rebuilt (symbols reordered) or extended.
"""
import os

MISSING = "<none>"  # stands for the symbol past the end of the shorter dictionary


def _symbols(dictionary):
    return dictionary.symbols if hasattr(dictionary, "symbols") else list(dictionary)


def first_difference(ours, theirs):
    """``(index, our symbol, their symbol)`` where two dictionaries first differ, else None.

    Either argument is a fairseq ``Dictionary`` or a sequence of symbols.
    """
    a, b = _symbols(ours), _symbols(theirs)
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else MISSING
        y = b[i] if i < len(b) else MISSING
        if x != y:
            return i, x, y
    return None


def describe_difference(ours, theirs, names=("ours", "theirs")):
    """``"first difference at index 4: data 'x' vs cache 'y'"`` (``names`` label the two), or ""."""
    diff = first_difference(ours, theirs)
    if diff is None:
        return ""
    i, a, b = diff
    return f"first difference at index {i}: {names[0]} {a!r} vs {names[1]} {b!r}"


def load_dictionary(path):
    """A fairseq ``Dictionary`` from ``dict.LANG.txt``."""
    from fairseq.data import Dictionary

    return Dictionary.load(str(path))


def _task_cfg(state):
    cfg = state.get("cfg") if hasattr(state, "get") else None
    return cfg.get("task") if cfg is not None and hasattr(cfg, "get") else None


def checkpoint_data_dir(state):
    """The data directory a checkpoint was trained on (the first of ``a:b`` shards), or None."""
    data = getattr(_task_cfg(state), "data", None)
    return str(data).split(":")[0] if data else None


def checkpoint_dictionaries(state, langs=(None, None)):
    """The (source, target) dictionaries a checkpoint was trained with, each None if unknown.

    Found in the data directory its config names (the first of ``a:b`` shards), when that is
    still there. ``langs`` (the caller's source/target languages) stand in where the
    checkpoint's config left the languages to be inferred.
    """
    task_cfg = _task_cfg(state)
    directory = checkpoint_data_dir(state)
    if directory is None:
        return None, None
    src = getattr(task_cfg, "source_lang", None) or langs[0]
    tgt = getattr(task_cfg, "target_lang", None) or langs[1]
    found = []
    for lang in (src, tgt):
        path = os.path.join(directory, f"dict.{lang}.txt") if lang else None
        found.append(load_dictionary(path) if path and os.path.isfile(path) else None)
    return tuple(found)
