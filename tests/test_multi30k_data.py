"""data/build_multi30k.py: the shipped Multi30k files are verified before anything is written."""
import gzip
import json
import shutil

import pytest

from data import build_multi30k as m


@pytest.fixture()
def shipped(tmp_path):
    """A copy of data/multi30k/ to alter."""
    dest = tmp_path / "multi30k"
    shutil.copytree(m.SHIPPED, dest)
    return dest


def test_builds_the_official_splits_whole(tmp_path):
    out = tmp_path / "corpus"
    manifest = m.build(out)
    assert {s: c["en"]["lines"] for s, c in manifest["counts"].items()} == {
        "train": 29000, "valid": 1014, "test_2016_flickr": 1000, "test_2017_flickr": 1000,
        "test_2017_mscoco": 461, "test_2018_flickr": 1071}
    # whitespace words (the official README's 377,534 counts tokenized words: "man," is two)
    assert manifest["counts"]["train"]["en"]["words"] == 345020
    # text as published: the first test_2016 reference, no normalisation
    first = (out / "test_2016_flickr.en").read_text(encoding="utf-8").split("\n")[0]
    assert first == "A man in an orange hat starring at something."
    assert json.loads((out / "MANIFEST.json").read_text())["sha256"] == m.read_sums(m.SHIPPED)
    assert not (tmp_path / "corpus.tmp").exists()
    # a rerun with the same files is skipped: the files are not rewritten
    stamp = (out / "train.de").stat().st_mtime_ns
    m.build(out)
    assert (out / "train.de").stat().st_mtime_ns == stamp


def test_an_altered_file_is_one_error_and_nothing_is_written(shipped, tmp_path, capsys):
    path = shipped / "raw" / "val.en.gz"
    text = gzip.decompress(path.read_bytes()).replace(b"A ", b"An ", 1)
    path.write_bytes(gzip.compress(text))
    with pytest.raises(m.BuildError, match=r"val\.en\.gz: sha256 .* is not the shipped .*git checkout"):
        m.build(tmp_path / "out", shipped=shipped)
    assert not (tmp_path / "out").exists()


def test_a_missing_file_is_one_error_line_exit_2(shipped, tmp_path, capsys, monkeypatch):
    (shipped / "raw" / "test_2017_mscoco.de.gz").unlink()
    monkeypatch.setattr(m, "SHIPPED", shipped)
    assert m.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().split("\n")
    assert len(err) == 1 and err[0].startswith("build_multi30k: error: ")
    assert "test_2017_mscoco.de.gz: missing" in err[0]


def test_a_changed_shipped_set_rebuilds(tmp_path):
    out = tmp_path / "corpus"
    m.build(out)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    manifest["sha256"]["train.de.gz"] = "0" * 64  # as if built from other files
    (out / "MANIFEST.json").write_text(json.dumps(manifest))
    m.build(out)
    assert json.loads((out / "MANIFEST.json").read_text())["sha256"] == m.read_sums(m.SHIPPED)
