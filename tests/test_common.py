"""kd_nmt.common: the helpers every kd-nmt command shares, on real fairseq and the fixture."""
import ast
import shutil
from pathlib import Path

import pytest

from helpers import run, tool
from kd_nmt.common import data_bin as db
from kd_nmt.common.dictionaries import (
    checkpoint_dictionaries,
    describe_difference,
    first_difference,
    load_dictionary,
)
from kd_nmt.common.lines import TextFile, read_lines
from kd_nmt.errors import KDNMTError

# line ends and whitespace that tell the readers apart: \r\n and a lone \r end lines (text
# mode); \u2028, \x0c and \x1c do not (str.splitlines would split there); surrounding
# whitespace, including a non-breaking space, is not part of the sentence
TRICKY = (
    "  \u2581a \u2581b  \r\n"
    "\u2581c\r"
    "\u2581d\u2028\u2581e\n"
    "\t\n"
    "\u2581f\x0c\u2581g \u00a0\n"
    "\n"
    "\u2581h\x1c\u2581i\n"
    "\u2581j   \u2581k"  # no final newline
)


@pytest.mark.slow  # runs fairseq-preprocess
def test_lines_are_read_as_fairseq_preprocess_reads_them(tmp_path):
    text = tmp_path / "tricky.x"
    text.write_bytes(TRICKY.encode("utf-8"))
    out = tmp_path / "bin"
    run([tool("fairseq-preprocess"), "--only-source", "--source-lang", "x", "--trainpref",
         tmp_path / "tricky", "--destdir", out, "--workers", "1"])
    from fairseq.data import data_utils

    dictionary = load_dictionary(out / "dict.x.txt")
    binarized = data_utils.load_indexed_dataset(str(out / "train.x-None.x"), dictionary)
    lines = read_lines(text)
    assert len(lines) == len(binarized) == 8
    for line, sentence in zip(lines, binarized):
        assert line.split() == dictionary.string(sentence).split()
        assert line == line.strip()  # as tokenize_line strips
    assert lines[0] == "\u2581a \u2581b" and lines[3] == "" and lines[5] == ""
    assert TextFile(text).sha256 == __import__("hashlib").sha256(TRICKY.encode("utf-8")).hexdigest()


def test_unreadable_text_is_one_clear_error(tmp_path):
    with pytest.raises(KDNMTError, match="reference file not found"):
        read_lines(tmp_path / "missing", "reference")
    bad = tmp_path / "latin1"
    bad.write_bytes(b"ok\nsch\xf6n\n")
    with pytest.raises(KDNMTError, match="is not UTF-8: byte 0xf6 at line 2"):
        read_lines(bad)


def test_first_dictionary_difference(data_bin, tmp_path):
    ours = load_dictionary(data_bin / "dict.en.txt")
    assert first_difference(ours, load_dictionary(data_bin / "dict.en.txt")) is None
    assert describe_difference(ours, ours) == ""
    lines = (data_bin / "dict.en.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "swapped.txt").write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n", encoding="utf-8")
    theirs = load_dictionary(tmp_path / "swapped.txt")
    a, b = lines[0].split()[0], lines[1].split()[0]
    assert first_difference(ours, theirs) == (4, a, b)  # after <s> <pad> </s> <unk>
    assert describe_difference(ours, theirs, ("data", "cache")) == (
        f"first difference at index 4: data {a!r} vs cache {b!r}")
    # a prefix: the longer one's next symbol against <none>; plain symbol lists work too
    assert first_difference(ours.symbols[:10], ours) == (10, "<none>", ours.symbols[10])


def test_checkpoint_dictionaries_are_found_via_its_data_dir(data_bin, teacher_checkpoint):
    from kd_nmt.checkpoint import load_checkpoint

    state = load_checkpoint(str(teacher_checkpoint))
    # trained with the languages inferred: the caller's stand in for them
    assert checkpoint_dictionaries(state) == (None, None)
    src, tgt = checkpoint_dictionaries(state, ("de", "en"))
    assert src.symbols == load_dictionary(data_bin / "dict.de.txt").symbols
    assert tgt.symbols == load_dictionary(data_bin / "dict.en.txt").symbols
    assert checkpoint_dictionaries({"cfg": None}) == (None, None)


def test_data_bin_splits_and_languages(data_bin, tmp_path):
    assert db.available_splits(data_bin) == ["test", "train", "valid"]
    assert db.infer_languages(data_bin) == ("de", "en")
    assert db.infer_languages(data_bin, "en") == ("en", "de")  # from the two dictionaries
    assert db.split_languages(data_bin, "test") == ("de", "en", True)
    assert db.split_languages(data_bin, "test", "en", "de") == ("en", "de", True)
    with pytest.raises(KDNMTError, match=r"split 'dev' not found .* available splits: test, train, valid"):
        db.split_languages(data_bin, "dev")
    with pytest.raises(KDNMTError, match="data-bin directory not found"):
        db.infer_languages(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KDNMTError, match="cannot infer the language pair .* found: none"):
        db.infer_languages(empty)

    # split, split1, ... in either direction, as fairseq combines them
    other = tmp_path / "combined"
    other.mkdir()
    for f in data_bin.iterdir():
        name = f.name.replace("valid.de-en", "train1.en-de")
        if not f.name.startswith("test."):
            shutil.copy(f, other / name)
    assert db.split_prefixes(other, "train", "de", "en") == [
        f"{other}/train.de-en.", f"{other}/train1.en-de."]
    assert db.split_prefixes(other, "train", "de", "en", combine=False) == [f"{other}/train.de-en."]
    assert db.split_prefixes(other, "test", "de", "en") == []


def test_translation_task_and_split(data_bin):
    from kd_nmt.common.task_setup import load_split, translation_task

    task = translation_task(data_bin, "de", "en")
    assert len(task.source_dictionary) == len(load_dictionary(data_bin / "dict.de.txt"))
    dataset = load_split(task, "valid")
    assert len(dataset) == len(read_lines(Path(__file__).parents[1] / "data/fixtures/deen/valid.de"))
    with pytest.raises(KDNMTError, match="cannot load split 'dev'"):
        load_split(task, "dev")


def test_detokenize_equals_fairseq_post_process():
    from fairseq.data.data_utils import post_process

    from kd_nmt.common.detokenize import REMOVE_BPE, detokenize

    for pieces in ("\u2581Das \u2581ist \u2581gu t .", "Da@@ s ist gu@@ t .", "a b"):
        for scheme in REMOVE_BPE:
            assert detokenize(pieces, scheme) == post_process(pieces, scheme).strip()


@pytest.mark.parametrize("command", ["relabel", "bench", "cache-teacher", "plot"])
def test_usage_errors_are_one_line(capsys, command):
    from kd_nmt.cli import main

    assert main([command, "--no-such-option"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kd-nmt: error: "), err
    assert f"see `kd-nmt {command} --help`" in err[0]


def _imports(path, modules):
    """kd_nmt modules ``path`` imports anywhere (functions included), as module names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kd_nmt"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kd_nmt"))
    return found & set(modules)


def test_no_import_cycles_in_the_package():
    package = Path(__file__).resolve().parents[1] / "kd_nmt"
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    state = {}  # name -> "open" while on the depth-first path, "done" after

    def visit(name, path):
        state[name] = "open"
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
