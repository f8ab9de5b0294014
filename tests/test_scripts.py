"""scripts/: prepare_corpus.py, export_ct2.py, average_checkpoints.py.

The error cases call each tool's ``main`` in this process (a KDNMTError is the one line the
tool prints); one subprocess per tool checks the command-line contract (``--help`` with an
example, exit status 2 and a single ``NAME: error:`` line).
"""
import json
import shutil
import sys

import pytest
import torch

from helpers import FIXTURE, REPO, run, tool
from kd_nmt.errors import KDNMTError

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

import average_checkpoints  # noqa: E402
import export_ct2  # noqa: E402
import prepare_corpus  # noqa: E402


def script(name, *args, **kwargs):
    return run([sys.executable, SCRIPTS / f"{name}.py", *args], **kwargs)


def corpus(tmp_path, files):
    """A corpus directory holding ``files`` (name -> text, or bytes)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (raw / name).write_bytes(content)
        else:
            (raw / name).write_text(content, encoding="utf-8")
    return raw


def lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


# --- the command-line contract --------------------------------------------------------------

@pytest.mark.slow  # one process per tool
@pytest.mark.parametrize("name", ["prepare_corpus", "export_ct2", "average_checkpoints"])
def test_help_has_an_example(name):
    out = script(name, "--help").stdout
    assert "example:" in out and f"scripts/{name}.py" in out


@pytest.mark.slow
def test_bad_input_is_one_line_and_status_2(tmp_path):
    raw = corpus(tmp_path, {"train.de": "a\nb\n", "train.en": "a\n", "valid.de": "a\n", "valid.en": "a\n"})
    proc = script("prepare_corpus", "--raw", raw, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("prepare_corpus: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()


# --- prepare_corpus ---------------------------------------------------------------------------

def prepare_error(raw, tmp_path, *args):
    with pytest.raises(KDNMTError) as info:
        prepare_corpus.main(["--raw", str(raw), "--out", str(tmp_path / "out"), *map(str, args)])
    assert not (tmp_path / "out").exists()
    return str(info.value)


def test_unequal_sides_name_the_file_and_both_counts(tmp_path):
    raw = corpus(tmp_path, {"train.de": "a\nb\nc\n", "train.en": "a\nb\nc\n",
                            "valid.de": "a\nb\nc\n", "valid.en": "a\nb\n"})
    message = prepare_error(raw, tmp_path)
    assert f"{raw / 'valid.de'} has 3 lines, {raw / 'valid.en'} has 2" in message


def test_non_utf8_names_the_file_and_line(tmp_path):
    raw = corpus(tmp_path, {"train.de": "a\nb\n", "train.en": "a\nb\n", "valid.de": "a\n",
                            "valid.en": "a\n", "test.de": "x\ny\n", "test.en": "x\nM\xfcller\n".encode("latin-1")})
    message = prepare_error(raw, tmp_path)
    assert str(raw / "test.en") in message and "not UTF-8" in message and "at line 2" in message


@pytest.mark.parametrize("missing", ["train.en", "valid.de"])
def test_missing_train_or_valid_side(tmp_path, missing):
    files = {f"{s}.{lang}": "a\n" for s in ("train", "valid") for lang in ("de", "en")}
    del files[missing]
    message = prepare_error(corpus(tmp_path, files), tmp_path)
    assert f"has no {missing}" in message


def test_other_languages_need_their_suffixes(tmp_path):
    files = {f"{s}.{lang}": "a\n" for s in ("train", "valid") for lang in ("de", "en")}
    message = prepare_error(corpus(tmp_path, files), tmp_path, "--source-lang", "fr")
    assert "has no train.fr" in message


def test_test_split_with_one_side_or_odd_name(tmp_path):
    files = {f"{s}.{lang}": "a\n" for s in ("train", "valid") for lang in ("de", "en")}
    raw = corpus(tmp_path, {**files, "test_a.de": "a\n"})
    assert f"{raw / 'test_a.de'} has no other side test_a.en" in prepare_error(raw, tmp_path)
    (raw / "test_a.de").rename(raw / "test.2019.de")
    assert "test split 'test.2019'" in prepare_error(raw, tmp_path)


@pytest.mark.slow  # prepare_corpus + fairseq-preprocess
def test_any_corpus_becomes_an_aligned_data_bin(tmp_path):
    """fr-en with a test_news split; a U+2028 inside a line (str.splitlines would split it) stays one line."""
    from fairseq.data import Dictionary, data_utils

    files = {}
    for split in ("train", "valid", "test"):
        for lang, suffix in (("de", "fr"), ("en", "en")):
            name = {"test": "test_news"}.get(split, split)
            files[f"{name}.{suffix}"] = (FIXTURE / f"{split}.{lang}").read_text(encoding="utf-8")
    files["train.fr"] = files["train.fr"].replace("\n", " \u2028 mitten\n", 1)
    raw = corpus(tmp_path, files)
    out = tmp_path / "fren"
    proc = script("prepare_corpus", "--raw", raw, "--out", out, "--vocab", "300",
                  "--source-lang", "fr", "--target-lang", "en")
    assert proc.stdout.strip() == str(out / "bin")
    assert "train 400, valid 60, test_news 60" in proc.stderr
    dictionary = Dictionary.load(str(out / "bin" / "dict.fr.txt"))
    assert (out / "bin" / "dict.en.txt").read_text() == (out / "bin" / "dict.fr.txt").read_text()
    for split, n in (("train", 400), ("valid", 60), ("test_news", 60)):
        for lang in ("fr", "en"):
            assert len(lines(out / "raw" / f"{split}.{lang}")) == n
            data = data_utils.load_indexed_dataset(str(out / "bin" / f"{split}.fr-en.{lang}"), dictionary)
            assert len(data) == n, (split, lang)
    assert "mitten" in lines(out / "raw" / "train.fr")[0]
    # a rerun with the same options finds every output and redoes nothing
    before = (out / "bin" / "train.fr-en.fr.bin").stat().st_mtime_ns
    script("prepare_corpus", "--raw", raw, "--out", out, "--vocab", "300", "--source-lang", "fr", "--target-lang", "en")
    assert (out / "bin" / "train.fr-en.fr.bin").stat().st_mtime_ns == before
    # with another vocabulary it is refused (it used to skip every step and keep the 300-piece corpus)
    other = script("prepare_corpus", "--raw", raw, "--out", out, "--source-lang", "fr", "--target-lang", "en",
                   check=False)
    assert other.returncode == 2 and "was prepared from other inputs or options (vocab 300 -> 8000)" in other.stderr
    assert (out / "bin" / "train.fr-en.fr.bin").stat().st_mtime_ns == before


# --- export_ct2 -------------------------------------------------------------------------------

def fairseq_greedy(data_bin, checkpoint):
    """Stock fairseq-generate's greedy pieces on the test split, by sentence id."""
    proc = run([tool("fairseq-generate"), data_bin, "--path", checkpoint, "--gen-subset", "test",
                "--beam", "1", "--batch-size", "64", "--cpu"],
               env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            head, _, pieces = line.split("\t")
            hyps[int(head[2:])] = pieces
    return hyps


def ct2_greedy(model_dir, sources):
    import ctranslate2

    translator = ctranslate2.Translator(str(model_dir), device="cpu", intra_threads=1)
    # as fairseq: at most max_len_b=200 tokens then EOS (CTranslate2's max_decoding_length counts
    # the tokens without the EOS); never <pad> (<blank> in CTranslate2)
    results = translator.translate_batch([s.split() for s in sources], beam_size=1,
                                         max_decoding_length=200, suppress_sequences=[["<blank>"]])
    return [" ".join(r.hypotheses[0]) for r in results]


def test_export_reproduces_fairseq_greedy(tmp_path, teacher_checkpoint, data_bin, tokenized):
    from kd_nmt.common.hashing import sha256_file

    checkpoint = tmp_path / "student.pt"
    shutil.copy(teacher_checkpoint, checkpoint)
    sources = lines(tokenized / "test.de")
    fairseq_out = fairseq_greedy(data_bin, checkpoint)
    assert len(fairseq_out) >= 0.9 * len(sources)  # fairseq-generate drops a few inputs silently
    for quantization, floor in (("float32", 0.95), ("int8", 0.0)):
        out = tmp_path / quantization
        export_ct2.main(["--checkpoint", str(checkpoint), "--data-bin", str(data_bin),
                         "--spm", str(tokenized / "spm.model"), "--out", str(out),
                         "--quantization", quantization])
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["quantization"] == quantization
        assert manifest["checkpoint_sha256"] == sha256_file(checkpoint)
        assert manifest["dictionaries"]["dict.de.txt"]["sha256"] == sha256_file(data_bin / "dict.de.txt")
        assert set(manifest["versions"]) == {"ctranslate2", "fairseq", "torch"}
        assert (out / "spm.model").read_bytes() == (tokenized / "spm.model").read_bytes()
        assert manifest["files"]["model.bin"] == sha256_file(out / "model.bin")
        hyps = ct2_greedy(out, sources)
        same = sum(hyps[i] == hyp for i, hyp in fairseq_out.items())
        assert same >= floor * len(fairseq_out), (quantization, same, len(fairseq_out))
    # a rerun converts nothing again; another directory's content is never replaced
    model = (tmp_path / "int8" / "model.bin").stat().st_mtime_ns
    export_ct2.main(["--checkpoint", str(checkpoint), "--data-bin", str(data_bin),
                     "--spm", str(tokenized / "spm.model"), "--out", str(tmp_path / "int8")])
    assert (tmp_path / "int8" / "model.bin").stat().st_mtime_ns == model
    with pytest.raises(KDNMTError, match="is not an earlier export"):
        export_ct2.main(["--checkpoint", str(checkpoint), "--data-bin", str(data_bin),
                         "--spm", str(tokenized / "spm.model"), "--out", str(tokenized)])


def test_export_refuses_other_dictionaries_or_spm(tmp_path, teacher_checkpoint, data_bin, tokenized):
    import sentencepiece as spm

    def export_error(bin_dir, spm_model):
        with pytest.raises(KDNMTError) as info:
            export_ct2.main(["--checkpoint", str(teacher_checkpoint), "--data-bin", str(bin_dir),
                             "--spm", str(spm_model), "--out", str(tmp_path / "out")])
        assert not (tmp_path / "out").exists()
        return str(info.value)

    symbols = (data_bin / "dict.en.txt").read_text(encoding="utf-8").splitlines()
    for name, content in (("swapped", [symbols[1], symbols[0], *symbols[2:]]), ("longer", [*symbols, "zzz 1"])):
        other = tmp_path / name
        other.mkdir()
        shutil.copy(data_bin / "dict.de.txt", other)
        (other / "dict.en.txt").write_text("\n".join(content) + "\n", encoding="utf-8")
        message = export_error(other, tokenized / "spm.model")
        if name == "swapped":  # same size: the first differing symbol, from the training data-bin
            assert f"{other / 'dict.en.txt'} is not the target dictionary" in message
            assert "first difference at index 4" in message
        else:
            assert f"target embedding table of {len(symbols) + 4} rows" in message

    spm.SentencePieceTrainer.train(
        input=str(FIXTURE / "valid.en"), model_prefix=str(tmp_path / "small"), vocab_size=200,
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    message = export_error(data_bin, tmp_path / "small.model")
    assert f"symbols of {data_bin / 'dict.de.txt'} are not pieces of {tmp_path / 'small.model'}" in message


# --- average_checkpoints ----------------------------------------------------------------------

def test_average_is_the_mean_by_hand(tmp_path, teacher_checkpoint):
    from fairseq import checkpoint_utils

    base = torch.load(teacher_checkpoint, map_location="cpu", weights_only=False)
    assert base.get("last_optimizer_state")
    gen = torch.Generator().manual_seed(0)
    a = {k: v + torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in base["model"].items()}
    b = {k: (v * 3 - 1).half() if v.is_floating_point() else v for k, v in base["model"].items()}
    paths = []
    for i, weights in enumerate((a, b)):
        paths.append(tmp_path / f"c{i}.pt")
        torch.save({**base, "model": weights}, paths[-1])
    out = tmp_path / "avg" / "avg.pt"
    average_checkpoints.main(["--inputs", *map(str, paths), "--out", str(out)])

    averaged = torch.load(out, map_location="cpu", weights_only=False)
    assert "last_optimizer_state" not in averaged
    assert averaged["extra_state"]["kd_nmt_averaged"] == [str(p) for p in paths]
    assert averaged["model"].keys() == a.keys()
    for k, v in averaged["model"].items():
        if a[k].is_floating_point():
            assert v.dtype == torch.float32
            by_hand = (a[k].double() + b[k].double()) / 2
            torch.testing.assert_close(v.double(), by_hand, rtol=1e-6, atol=1e-6)  # float32 rounding
    # a normal checkpoint: fairseq builds the model from it and loads the weights strictly
    # (compared on an untied weight: the perturbed copies of the tied embeddings differ, and
    # the model keeps whichever name loads last)
    models, _cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(out)])
    name = "encoder.layers.0.fc1.weight"
    torch.testing.assert_close(models[0].state_dict()[name], averaged["model"][name])


def test_average_last_n_of_a_run(tmp_path, teacher_checkpoint):
    base = torch.load(teacher_checkpoint, map_location="cpu", weights_only=False)
    key = "encoder.embed_tokens.weight"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for value, name in ((1.0, "checkpoint_1_100.pt"), (2.0, "checkpoint_1_200.pt"), (4.0, "checkpoint_2_900.pt"),
                        (8.0, "checkpoint_2_1000.pt"), (16.0, "checkpoint_best.pt")):
        torch.save({**base, "model": {**base["model"], key: torch.full_like(base["model"][key], value)}},
                   run_dir / name)
    out = tmp_path / "avg.pt"
    average_checkpoints.main(["--run", str(run_dir), "--last", "2", "--out", str(out)])
    averaged = torch.load(out, map_location="cpu", weights_only=False)
    assert torch.all(averaged["model"][key] == 6.0)  # updates 900 and 1000: by number, not by name
    with pytest.raises(KDNMTError, match="has 4 interval checkpoints"):
        average_checkpoints.main(["--run", str(run_dir), "--last", "5", "--out", str(out)])


def test_average_refuses_other_architectures(tmp_path, teacher_checkpoint):
    base = torch.load(teacher_checkpoint, map_location="cpu", weights_only=False)
    key = "encoder.embed_tokens.weight"
    other = tmp_path / "other.pt"
    torch.save({**base, "model": {**base["model"], key: base["model"][key][:-8]}}, other)
    with pytest.raises(KDNMTError, match="differ in the shape of 'encoder.embed_tokens.weight'"):
        average_checkpoints.main(["--inputs", str(teacher_checkpoint), str(other), "--out", str(tmp_path / "a.pt")])
    with pytest.raises(KDNMTError, match="is one of the inputs"):
        average_checkpoints.main(["--inputs", str(other), "--out", str(other)])
