"""``kd-nmt bench``: BLEU/chrF, speed and size of fairseq checkpoints on one test set.

The test set is a binarized split or raw text (``--input``/``--reference``, encoded as the
training data was: ``kd_nmt.bench.test_set``). For each checkpoint, greedy (beam 1) and beam
search decode every line, with fairseq or CTranslate2 (``--backend``); the detokenized output is
scored with sacreBLEU against the references, timed, and compared with a baseline by paired
bootstrap resampling. Writes ``OUT/bench.csv``, ``OUT/bench.md``, ``OUT/bench.json``,
``OUT/bench_buckets.csv`` and ``OUT/<name>.<decode>.hyp``, and prints the Markdown table.
``--deploy`` writes the deployment table instead (``kd_nmt.bench.deploy``). Every input is
checked before any decoding starts.
"""
import csv
import functools
import io
import json
import os
import re
import sys
import time

from kd_nmt.bench import done
from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.atomic import atomic_write, publish_group
from kd_nmt.common.detokenize import REMOVE_BPE
from kd_nmt.common.dictionaries import checkpoint_dictionaries, describe_difference
from kd_nmt.common.logging_setup import quiet_logging
from kd_nmt.errors import KDNMTError

EXAMPLES = """
examples:
  # a teacher and two students on the test split; sentencepiece model for detokenization,
  # the raw reference file, the teacher as the bootstrap baseline
  kd-nmt bench --checkpoint teacher/checkpoint_best.pt student_word/checkpoint_best.pt \\
      student_hybrid/checkpoint_best.pt --data-bin data-bin --split test \\
      --spm spm.model --reference raw/test.en --out results/bench \\
      --names teacher method=word_kd,size=small method=hybrid_kd,size=small

  # one noise level of a sweep: --tag adds a column to every row (for `kd-nmt plot`)
  kd-nmt bench --checkpoint runs/noise0.2/*/checkpoint_best.pt --data-bin data-bin \\
      --split test_tech --tag noise=0.2 --beam 4 --bootstrap 0 --out results/noise0.2

  # then draw BLEU vs size / vs noise
  kd-nmt plot --results results/bench results/noise0.* --out results/figures

  # raw text (no binarized split): normalised and encoded like the training data, with the
  # sentencepiece model beside the data-bin (DATA/spm.model); decoded by CTranslate2 int8
  kd-nmt bench --checkpoint student/checkpoint_best.pt --data-bin work/data/bin \
      --input work/data/raw/test_tech.de --reference work/data/raw/test_tech.en \
      --backend ctranslate2 --ct2-quantization int8 --out results/ct2

  # deployment table: teacher and student, CTranslate2 int8 and fairseq float32, one thread:
  # BLEU/chrF, sentences/s and words/s (batches of 32), latency at batch 1, peak RSS, size
  kd-nmt bench --deploy --checkpoint models/teacher-deen/model.pt student/checkpoint_best.pt \
      --names teacher student --data-bin work/data/bin --input work/data/raw/test_tech.de \
      --reference work/data/raw/test_tech.en --beam 5 --out results/deploy

naming and columns:
  --names takes one entry per checkpoint: a plain name ("teacher") or comma-separated
  key=value pairs ("method=word_kd,size=tiny,noise=0.1"); each key becomes a CSV column,
  and the row is named by the "name" key if given, else by the values ("word_kd/tiny/0.1").
  --tag KEY=VALUE (repeatable) adds a column to every row. `kd-nmt plot` reads the columns
  method, size and noise. By default a checkpoint is named after its directory
  (run/checkpoint_best.pt -> "run").

speed:
  sentences/s and tokens/s time only the engine's calls (fairseq's generate, CTranslate2's
  translate_batch; after an untimed warm-up batch), with --threads threads (default 1, so
  runs on a shared machine compare). tokens/s counts generated target subword tokens, EOS
  excluded.
"""

# fixed bench.csv columns; tag columns (from --names / --tag) go right after "name"
CSV_COLUMNS = [
    "name", "checkpoint", "split", "backend", "decode", "beam", "n_sentences", "n_truncated", "params",
    "weights_mb", "size_mb", "bleu", "chrf", "bleu_ci95", "chrf_ci95", "p_bleu", "p_chrf",
    "baseline", "decode_seconds", "sents_per_s", "toks_per_s", "out_tokens", "threads",
    "device", "bleu_signature", "chrf_signature", "hyp_file", "token_acc",
]
BUCKET_COLUMNS = ["name", "decode", "bucket", "n_sentences", "bleu", "chrf"]
TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = set(CSV_COLUMNS) | set(BUCKET_COLUMNS)


def build_parser():
    parser = ArgumentParser(
        prog="kd-nmt bench",
        description="BLEU/chrF (sacreBLEU, with signatures), greedy and beam decoding speed, "
        "parameter count and file size of fairseq translation checkpoints on one binarized "
        "split, with paired bootstrap p-values against a baseline.",
        epilog=EXAMPLES,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--checkpoint", "--checkpoints", nargs="+", required=True, metavar="PT",
                    help="fairseq checkpoints to benchmark (trusted files: they are unpickled)")
    io.add_argument("--data-bin", default=None, metavar="DIR",
                    help="fairseq-preprocess output directory (the dictionaries); with --input, "
                    "default: the directory the first checkpoint was trained on")
    io.add_argument("--split", default=None, help="binarized split to decode (default: test)")
    io.add_argument("--input", default=None, metavar="FILE",
                    help="raw source text instead of a binarized split (needs --reference); "
                    "normalised and sentencepiece-encoded as data/prepare.py does")
    io.add_argument("--normalize", default="moses", choices=["moses", "none"],
                    help="with --input: sacremoses punctuation normalisation as in data/prepare.py "
                    "(default), or none for data encoded without it")
    io.add_argument("--source-lang", default=None, help="source language (default: from the file names)")
    io.add_argument("--target-lang", default=None, help="target language (default: from the file names)")
    io.add_argument("--out", default="bench-results", metavar="DIR", help="output directory (default: ./bench-results)")
    io.add_argument("--skip-done", action="store_true",
                    help="do nothing when OUT already holds the bench of this same command and no checkpoint "
                    "changed since (what a resumable recipe wants); otherwise bench and replace it")
    io.add_argument("--reference", default=None, metavar="FILE",
                    help="raw (detokenized) reference file, one line per line of the split; "
                    "default: the data-bin's target side, detokenized like the hypotheses")
    detok = io.add_mutually_exclusive_group()
    detok.add_argument("--spm", "--spm-model", dest="spm", default=None, metavar="MODEL",
                       help="sentencepiece model: detokenize with its decode_pieces (with --input "
                       "also encode; default there: DATA_BIN/spm.model or DATA_BIN/../spm.model)")
    detok.add_argument("--remove-bpe", default="sentencepiece", choices=REMOVE_BPE,
                       help="detokenization without a model (default: sentencepiece = join pieces, "
                       "'\u2581' -> space, as fairseq-generate --remove-bpe sentencepiece)")
    io.add_argument("--names", nargs="+", default=None, metavar="NAME",
                    help="one name per checkpoint; NAME may be key=value[,key=value...] (see below)")
    io.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                    help="a column added to every row, e.g. --tag noise=0.1 (repeatable)")

    dec = parser.add_argument_group("decoding")
    dec.add_argument("--beam", type=int, default=5, help="beam size of the beam rows (default: 5; 1 = greedy only)")
    dec.add_argument("--no-greedy", action="store_true", help="skip the greedy (beam 1) rows")
    dec.add_argument("--batch-tokens", type=int, default=4000, metavar="N",
                     help="padded source tokens per batch (default: 4000)")
    dec.add_argument("--batch-sentences", type=int, default=None, metavar="N",
                     help="at most N sentences per batch (default: 0 = no limit; 32 with --deploy)")
    dec.add_argument("--max-len-a", type=float, default=0.0, help="max output length a*src_len+b (default a=0)")
    dec.add_argument("--max-len-b", type=int, default=200, help="max output length a*src_len+b (default b=200)")
    dec.add_argument("--threads", type=int, default=1, help="torch CPU threads while decoding (default: 1)")
    dec.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    dec.add_argument("--backend", default="fairseq", choices=["fairseq", "ctranslate2"],
                     help="decode with fairseq's SequenceGenerator (default) or CTranslate2 (the "
                     "checkpoint converted once, cached next to it as CKPT.ct2-QUANT/)")
    dec.add_argument("--ct2-quantization", default="int8", metavar="QUANT",
                     help="CTranslate2 weight type: int8 (default), float32, int16, ...")
    dec.add_argument("--teacher-forced", action="store_true",
                     help="add a 'forced' row: the argmax at every gold-prefix position (its BLEU and the "
                     "token accuracy; Wei et al.'s easy decoding). Binarized split, fairseq backend")
    dec.add_argument("--prefix-tokens", type=int, default=0, metavar="K",
                     help="add a 'greedy+prefixK' row: greedy search with each reference's first K tokens "
                     "forced (the output includes them). Binarized split, fairseq backend")
    dec.add_argument("--prefix-fraction", type=float, default=0.0, metavar="F",
                     help="the same with floor(F x reference length) tokens forced (row 'greedy+prefixF')")
    dec.add_argument("--bf16", action="store_true",
                     help="decode under CPU bfloat16 autocast (float32 weights); add --tag "
                     "precision=bf16 to tell its rows apart from float32 ones")

    sco = parser.add_argument_group("scoring")
    sco.add_argument("--baseline", default=None, metavar="NAME_OR_PT",
                     help="the system the others are tested against: a name or a --checkpoint "
                     "path (default: the first checkpoint)")
    sco.add_argument("--baseline-per", default=None, metavar="TAG",
                     help="test each system against the baseline of its own TAG group: the system whose "
                     "--names tags equal --baseline's but for TAG (e.g. size: every student size against "
                     "its own baseline student); systems without TAG, or whose group has none, against "
                     "--baseline")
    sco.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                     help="paired bootstrap resamples (sacreBLEU, seed 12345); 0 skips the test (default: 1000)")
    sco.add_argument("--buckets", default="10,25", metavar="B1,B2",
                     help="source-length bucket bounds in words for bench_buckets.csv "
                     "(default: 10,25 -> <=10, 11-25, >25; 'none' skips)")
    dep = parser.add_argument_group("deployment table (--deploy)")
    dep.add_argument("--deploy", action="store_true",
                     help="per checkpoint and engine: BLEU/chrF, throughput, latency at batch 1, peak "
                     "RSS, model size (OUT/deploy.md, .json, .csv, deploy_speed_quality.png); decodes "
                     "with --beam only")
    dep.add_argument("--engines", nargs="+", default=None, metavar="ENGINE",
                     help="engines to measure (default: ctranslate2-int8 fairseq-float32)")
    dep.add_argument("--latency-lines", type=int, default=100, metavar="N",
                     help="lines translated one by one for the latency (default: the first 100)")
    parser.add_argument("--no-progress", "--no-progress-bar", dest="no_progress", action="store_true",
                        help="no progress bars (--no-progress-bar: an alias)")
    return parser


# --------------------------------------------------------------------------------------------
# names and tags
# --------------------------------------------------------------------------------------------
def parse_pairs(text, what):
    """``"a=1,b=x"`` → ``{"a": "1", "b": "x"}``; one clear error for a malformed pair or key."""
    pairs = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not TAG_KEY.match(key):
            raise KDNMTError(f"{what} {text!r}: expected key=value pairs separated by commas (bad part {part!r})")
        if key != "name" and key in RESERVED:
            raise KDNMTError(f"{what} {text!r}: {key!r} is a bench.csv column; choose another key")
        pairs[key] = value.strip()
    return pairs


def default_name(path):
    """``run/checkpoint_best.pt`` → ``run``; ``run/checkpoint12.pt`` → ``run-checkpoint12``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if stem == "checkpoint_best" and parent:
        return parent
    if stem.startswith("checkpoint") and parent:
        return f"{parent}-{stem}"
    return stem


def system_names(checkpoints, names, tags):
    """``[(name, tags_dict)]`` per checkpoint (names unique)."""
    common = {}
    for tag in tags:
        common.update(parse_pairs(tag, "--tag"))
    common.pop("name", None)
    if names is not None and len(names) != len(checkpoints):
        raise KDNMTError(
            f"--names has {len(names)} entries for {len(checkpoints)} checkpoints; give one per checkpoint"
        )
    systems, seen = [], {}
    for i, path in enumerate(checkpoints):
        spec = names[i] if names is not None else None
        own = {}
        if spec is not None and "=" in spec:
            own = parse_pairs(spec, "--names entry")
            name = own.pop("name", None) or "/".join(v for v in own.values() if v) or spec
        else:
            name = spec or default_name(path)
        if not name.strip():
            raise KDNMTError(f"empty name for checkpoint {path!r}")
        if name in seen:
            if names is not None:
                raise KDNMTError(f"--names: {name!r} is given twice; names must be unique")
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        seen.setdefault(name, 1)
        systems.append((name, {**common, **own}))
    stems = [file_stem(name) for name, _ in systems]
    for stem in stems:
        if stems.count(stem) > 1:
            clash = [name for name, _ in systems if file_stem(name) == stem]
            raise KDNMTError(f"names {clash} give the same file name {stem!r}; choose other --names")
    return systems


def file_stem(name):
    """A system name as a file name: ``word_kd/tiny/0.1`` → ``word_kd_tiny_0.1``."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)


def baselines_by_group(systems, baseline, per):
    """``{name: the name of the system it is tested against}``. Without ``per``, ``baseline`` for all;
    with it, a system carrying tag ``per`` is tested against the system whose tags are
    ``baseline``'s with that tag set to its own value, where there is one."""
    tags = dict(systems)
    out = {name: baseline for name, _ in systems}
    if per is None:
        return out
    for name, own in systems:
        if per not in own:
            continue
        want = {**tags[baseline], per: own[per]}
        match = [other for other, theirs in systems if theirs == want]
        if match:
            out[name] = match[0]
    return out


def resolve_baseline(spec, checkpoints, systems):
    if spec is None:
        return 0
    for i, (name, _) in enumerate(systems):
        if spec == name:
            return i
    for i, path in enumerate(checkpoints):
        if spec == path or (os.path.exists(spec) and os.path.exists(path) and os.path.samefile(spec, path)):
            return i
    raise KDNMTError(
        f"--baseline {spec!r} is neither a name ({', '.join(n for n, _ in systems)}) "
        "nor one of the --checkpoint paths"
    )


# --------------------------------------------------------------------------------------------
# checks done before any decoding
# --------------------------------------------------------------------------------------------
def check_checkpoint(path, task, data_bin, langs):
    """One clear error if ``path`` is not a translation checkpoint built on ``task``'s dictionaries."""
    from kd_nmt.checkpoint import checkpoint_vocab_sizes, load_checkpoint

    state = load_checkpoint(path)
    weights = state.get("model") or {}
    if not any(k.startswith("encoder.") for k in weights) or not any(k.startswith("decoder.") for k in weights):
        raise KDNMTError(f"checkpoint {path!r} holds no encoder-decoder translation model")
    dictionaries = (task.source_dictionary, task.target_dictionary)
    # the dictionaries the checkpoint was trained with, where its data directory still exists
    trained = checkpoint_dictionaries(state, langs)
    sizes = checkpoint_vocab_sizes(state)
    names = ("data-bin", "checkpoint")
    for side, ours, theirs, size in zip(("source", "target"), dictionaries, trained, sizes):
        if size is not None and size != len(ours):
            detail = describe_difference(ours, theirs, names) if theirs is not None else ""
            raise KDNMTError(
                f"dictionary mismatch: checkpoint {path!r} has a {side} vocabulary of {size} "
                f"symbols, {data_bin!r} has {len(ours)}{'; ' + detail if detail else ''}. Benchmark "
                "on data binarized with the checkpoint's dictionaries (fairseq-preprocess "
                "--srcdict/--tgtdict)."
            )
        if theirs is not None and len(theirs) == len(ours):
            detail = describe_difference(ours, theirs, names)
            if detail:
                raise KDNMTError(
                    f"dictionary mismatch: checkpoint {path!r} was trained with another {side} "
                    f"dictionary than {data_bin!r} (same size {len(ours)}); {detail}"
                )


def validate_args(args):
    check_minimums(("--beam", args.beam, 1), ("--batch-tokens", args.batch_tokens, 1),
                   ("--latency-lines", args.latency_lines, 1),
                   ("--threads", args.threads, 1), ("--bootstrap", args.bootstrap, 0),
                   ("--batch-sentences", args.batch_sentences, 0), ("--max-len-b", args.max_len_b, 1))
    if args.input is None and args.data_bin is None:
        raise KDNMTError("give --data-bin DIR (with --split), or raw text with --input and --reference")
    if args.no_greedy and args.beam == 1 and not (args.teacher_forced or args.prefix_tokens or args.prefix_fraction):
        raise KDNMTError("--no-greedy with --beam 1 leaves nothing to decode")
    check_minimums(("--prefix-tokens", args.prefix_tokens, 0), ("--prefix-fraction", args.prefix_fraction, 0.0))
    if args.prefix_fraction >= 1.0:
        raise KDNMTError(f"--prefix-fraction must be below 1 (the whole reference would be forced), got "
                         f"{args.prefix_fraction}")
    if args.prefix_tokens and args.prefix_fraction:
        raise KDNMTError("give --prefix-tokens or --prefix-fraction, not both")
    gold = [flag for flag, on in (("--teacher-forced", args.teacher_forced), ("--prefix-tokens", args.prefix_tokens),
                                  ("--prefix-fraction", args.prefix_fraction)) if on]
    if gold and (args.backend != "fairseq" or args.input is not None or args.deploy):
        raise KDNMTError(f"{gold[0]} decodes against the gold target: it needs a binarized split (--data-bin, "
                         "--split), the fairseq backend and no --deploy")
    missing = [p for p in args.checkpoint if not os.path.isfile(p)]
    if missing:
        raise KDNMTError(f"checkpoint not found: {', '.join(repr(p) for p in missing)}")
    if args.reference is not None and not os.path.isfile(args.reference):
        raise KDNMTError(f"reference file not found: {args.reference!r}")
    if args.spm is not None and not os.path.isfile(args.spm):
        raise KDNMTError(f"sentencepiece model not found: {args.spm!r}")
    if args.device != "cpu":
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise KDNMTError(f"--device {args.device}: CUDA is not available on this machine")
    if args.bf16 and args.device != "cpu":
        raise KDNMTError("--bf16 is CPU bfloat16 autocast: use it with --device cpu")
    from kd_nmt.common.ct2_conversion import QUANTIZATIONS

    if args.ct2_quantization not in QUANTIZATIONS:
        raise KDNMTError(
            f"unknown --ct2-quantization {args.ct2_quantization!r}; choose from {', '.join(QUANTIZATIONS)}")
    if args.bf16 and (args.backend == "ctranslate2" or args.deploy):
        raise KDNMTError("--bf16 is autocast of the fairseq backend; CTranslate2 computes in bfloat16 "
                         "with --ct2-quantization bfloat16")
    if args.input is not None and args.remove_bpe != "sentencepiece":
        raise KDNMTError("--input text is sentencepiece-encoded: drop --remove-bpe")
    if args.deploy:
        from kd_nmt.bench.deploy import DEFAULT_ENGINES, parse_engine

        args.engines = args.engines or list(DEFAULT_ENGINES)
        for engine in args.engines:
            parse_engine(engine)
    elif args.engines is not None:
        raise KDNMTError("--engines is for the deployment table: add --deploy (or use --backend)")


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------
def _fmt_params(n):
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def _fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def _fmt_p(p):
    if p is None:
        return ""
    return f"{p:.4f}" + ("*" if p < 0.05 else "")


def markdown_table(rows, meta):
    head = ["name", "params", "size MB", "decode", "BLEU", "chrF", "sents/s", "toks/s",
            "p (BLEU)", "p (chrF)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 2 + ["---"] + ["---:"] * 6) + "|"]
    for r in rows:
        if r["baseline"] == r["name"]:
            p_bleu = p_chrf = "baseline"
        else:
            p_bleu, p_chrf = _fmt_p(r["p_bleu"]), _fmt_p(r["p_chrf"])
        decode = r["decode"] + (f" (token acc {r['token_acc']:.3f})" if r.get("token_acc") is not None else "")
        cells = [r["name"], _fmt_params(r["params"]), _fmt(r["size_mb"], 1), decode,
                 _fmt(r["bleu"]), _fmt(r["chrf"]), _fmt(r["sents_per_s"], 1), _fmt(r["toks_per_s"], 0),
                 p_bleu, p_chrf]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    notes = [
        f"- {meta['split']} ({meta['source_lang']}->{meta['target_lang']}, {meta['n_sentences']} sentences), "
        f"reference: {meta['reference']}; detokenizer: {meta['detokenizer']}",
        f"- BLEU signature: `{meta['signatures']['BLEU']}`",
        f"- chrF signature: `{meta['signatures']['chrF']}`",
    ]
    boot = meta.get("bootstrap")
    if boot:
        notes.append(
            f"- p: paired bootstrap resampling (sacreBLEU, {boot['n_samples']} resamples, seed "
            f"{boot['seed']}) against `{boot['baseline']}`"
            + (f" (or its counterpart of the same {boot['baseline_per']})" if boot.get("baseline_per") else "")
            + " with the same decoding; * = p < 0.05; "
            f"signatures `{boot['signatures'].get('BLEU', '')}`, `{boot['signatures'].get('chrF', '')}`"
        )
    if meta.get("backend", "fairseq") == "fairseq":
        notes.append(
            f"- speed: fairseq SequenceGenerator on {meta['device']}"
            f"{' (bf16 autocast)' if meta.get('bf16') else ''}, {meta['threads']} thread(s), "
            f"batches of <= {meta['batch_tokens']} source tokens, generate calls only; "
            "size MB = checkpoint file size (with optimizer state, if saved)"
        )
    else:
        notes.append(
            f"- speed: CTranslate2 ({meta['backend']}) on {meta['device']}, {meta['threads']} thread(s), "
            f"batches of <= {meta['batch_tokens']} source tokens, translate_batch calls only; "
            "size MB = the converted model directory"
        )
    truncated = [r for r in rows if r["n_truncated"] and r["decode"] == rows[0]["decode"]]
    if truncated:
        notes.append("- sources truncated to the model's max positions: " + ", ".join(
            f"{r['name']} {r['n_truncated']}" for r in truncated))
    return "\n".join(lines), "\n".join(notes)


def csv_text(rows, columns):
    """``rows`` (dicts) as CSV text with the header ``columns`` (None as an empty cell)."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


def tag_columns(systems):
    keys = []
    for _, tags in systems:
        for key in tags:
            if key not in keys:
                keys.append(key)
    return keys


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def decodings(args):
    """``[(name, beam)]`` of the rows each system gets; beam 0 = teacher-forced, a name with
    ``+prefix`` = greedy with the gold prefix forced."""
    out = [] if args.no_greedy else [("greedy", 1)]
    if args.beam > 1:
        out.append((f"beam{args.beam}", args.beam))
    if args.teacher_forced:
        out.append(("forced", 0))
    if args.prefix_tokens or args.prefix_fraction:
        out.append((f"greedy+prefix{args.prefix_tokens or f'{args.prefix_fraction:g}'}", 1))
    return out


def _engine(args, path, model, test, beam, decode_name=""):
    """``(engine, size in bytes)``: ``model`` (fairseq) or its CTranslate2 conversion, on ``test``."""
    if decode_name == "forced" or "+prefix" in decode_name:
        from kd_nmt.bench.forced import PrefixEngine, TeacherForcedEngine

        if decode_name == "forced":
            return TeacherForcedEngine(model, test.task, test.dataset, device=args.device, bf16=args.bf16), \
                os.path.getsize(path)
        return PrefixEngine(model, test.task, test.dataset, prefix_tokens=args.prefix_tokens,
                            prefix_fraction=args.prefix_fraction, beam=beam, max_len_a=args.max_len_a,
                            max_len_b=args.max_len_b, device=args.device, bf16=args.bf16), os.path.getsize(path)
    if args.backend == "fairseq":
        from kd_nmt.bench.decode import FairseqEngine

        engine = FairseqEngine(model, test.task, test.dataset, beam=beam, max_len_a=args.max_len_a,
                               max_len_b=args.max_len_b, device=args.device, bf16=args.bf16)
        return engine, os.path.getsize(path)
    from kd_nmt.bench.ct2_engine import CT2Engine, convert
    from kd_nmt.common.ct2_conversion import directory_size
    from kd_nmt.common.logging_setup import status

    model_dir = convert(path, test.data_bin, test.source_lang, test.target_lang, args.ct2_quantization,
                        log=status("bench"))
    engine = CT2Engine(model_dir, tuple(model.max_positions()), test.token_lists, beam=beam,
                       max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                       device="cuda" if args.device.startswith("cuda") else "cpu", threads=args.threads)
    return engine, directory_size(model_dir)


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = done.recorded_command(sys.argv[2:] if argv is None else argv)
    if args.skip_done and not args.deploy:
        why = done.finished(args.out, command, args.checkpoint)
        if why:
            print(f"kd-nmt bench: skip {args.out} (done: {why})", file=sys.stderr)
            return 0
    quiet_logging()
    validate_args(args)
    systems = system_names(args.checkpoint, args.names, args.tag)
    baseline_index = resolve_baseline(args.baseline, args.checkpoint, systems)
    from kd_nmt.bench import metrics

    bounds = metrics.parse_buckets(args.buckets)

    from kd_nmt.bench import decode as dec
    from kd_nmt.bench.test_set import load_test_set
    from kd_nmt.bench.timed_decoding import translate_all
    from kd_nmt.checkpoint import install_fairseq_patches, load_models

    install_fairseq_patches()
    test = load_test_set(args)
    n = len(test)
    for path in args.checkpoint:
        check_checkpoint(path, test.task, test.data_bin, (test.source_lang, test.target_lang))

    # every input checked: now the work
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:  # already set in this process
        pass
    os.makedirs(args.out, exist_ok=True)
    atomic_write(os.path.join(args.out, "reference.txt"), "".join(r + "\n" for r in test.references))
    if args.deploy:
        from kd_nmt.bench import deploy
        from kd_nmt.common.logging_setup import status

        return deploy.run(args, test, systems, args.out, csv_text, file_stem, status("bench"))

    batch_sentences = args.batch_sentences or 0
    backend = "fairseq" if args.backend == "fairseq" else f"ctranslate2-{args.ct2_quantization}"
    decodes = decodings(args)
    rows, bucket_rows, hyps = [], [], {}
    baseline_name = systems[baseline_index][0]
    tested_against = baselines_by_group(systems, baseline_name, args.baseline_per)
    started = time.time()
    for path, (name, tags) in zip(args.checkpoint, systems):
        models, _ = load_models([path], task=test.task)
        model = models[0].to(args.device)
        params = dec.count_parameters(model)
        weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
        for decode_name, beam in decodes:
            engine, size = _engine(args, path, model, test, beam, decode_name)
            result = translate_all(engine, test.detok, args.batch_tokens, batch_sentences,
                                   progress=not args.no_progress, desc=f"{name} {decode_name}")
            token_acc = getattr(engine, "token_accuracy", None)  # teacher-forced rows only
            del engine
            hyp_file = f"{file_stem(name)}.{decode_name}.hyp"
            atomic_write(os.path.join(args.out, hyp_file), "".join(h + "\n" for h in result.hypotheses))
            scores = metrics.corpus_scores(result.hypotheses, test.references)
            secs = result.seconds
            row = {
                "name": name, **tags, "tags": tags, "checkpoint": path, "split": test.name,
                "backend": backend, "decode": decode_name,
                "beam": beam, "n_sentences": n, "n_truncated": result.n_truncated, "params": params,
                "weights_mb": round(weights_mb, 3), "size_mb": round(size / 1e6, 3),
                "bleu": scores["bleu"], "chrf": scores["chrf"], "bleu_ci95": None, "chrf_ci95": None,
                "p_bleu": None, "p_chrf": None, "baseline": tested_against[name] if args.bootstrap else None,
                "decode_seconds": round(secs, 4),
                "sents_per_s": round(n / secs, 3) if secs > 0 else None,
                "toks_per_s": round(result.n_tokens / secs, 3) if secs > 0 else None,
                "out_tokens": result.n_tokens, "threads": args.threads, "device": args.device,
                "bleu_signature": scores["bleu_signature"], "chrf_signature": scores["chrf_signature"],
                "bleu_detail": scores["bleu_detail"], "hyp_file": hyp_file,
                "token_acc": None if token_acc is None else round(token_acc, 5),
            }
            rows.append(row)
            hyps[(name, decode_name)] = result.hypotheses
            for b in metrics.bucket_scores(result.hypotheses, test.references, test.source_words, bounds):
                bucket_rows.append({"name": name, **tags, "decode": decode_name, **b})
        del models, model
    signatures = {"BLEU": rows[0]["bleu_signature"], "chrF": rows[0]["chrf_signature"]}
    boot_meta = None
    if args.bootstrap:
        boot_sigs = {}
        for decode_name, _ in decodes:
            results = {}
            for base in dict.fromkeys(tested_against.values()):  # one test per baseline (group)
                others = [(name, hyps[(name, decode_name)]) for name, b in tested_against.items()
                          if b == base and name != base]
                if others:
                    boot_sigs, mine = metrics.paired_bootstrap(
                        (base, hyps[(base, decode_name)]), others, test.references, args.bootstrap)
                    results.update(mine)  # a group's baseline is only ever the base of its own test
            for row in rows:
                if row["decode"] != decode_name or row["name"] not in results:
                    continue
                res = results[row["name"]]
                row["p_bleu"], row["p_chrf"] = res["bleu"]["p_value"], res["chrf"]["p_value"]
                row["bleu_ci95"], row["chrf_ci95"] = res["bleu"]["ci"], res["chrf"]["ci"]
                row["bootstrap"] = res
        boot_meta = {"n_samples": args.bootstrap, "seed": os.environ.get("SACREBLEU_SEED", "12345"),
                     "baseline": baseline_name, "baseline_per": args.baseline_per,
                     "test": "paired bootstrap resampling (sacrebleu PairedTest, bs)",
                     "signatures": boot_sigs,
                     "note": "p-value 1.0 where a system's output is identical to the baseline's"}

    meta = {
        "split": test.name, "source_lang": test.source_lang, "target_lang": test.target_lang, "n_sentences": n,
        "data_bin": test.data_bin, "input": args.input, "normalize": args.normalize if args.input else None,
        "reference": test.reference_desc, "detokenizer": test.detok.describe(),
        "backend": backend, "threads": args.threads, "device": args.device, "bf16": args.bf16,
        "batch_tokens": args.batch_tokens,
        "beam": args.beam, "max_len_a": args.max_len_a, "max_len_b": args.max_len_b,
        "signatures": signatures, "bootstrap": boot_meta,
        "buckets": metrics.bucket_labels(bounds) if bounds else [],
    }
    extra = tag_columns(systems)
    table, notes = markdown_table(rows, meta)
    report = dict(meta, command=command,
                  seconds=round(time.time() - started, 2),
                  systems=[{k: v for k, v in r.items() if k not in extra} for r in rows],
                  bucket_scores=bucket_rows)
    out = functools.partial(os.path.join, args.out)
    # published together, bench.md (what the recipes take as "done") last: a full disk left a
    # complete-looking bench.csv beside an empty bench.md
    publish_group(
        [(out("bench.csv"), csv_text(rows, CSV_COLUMNS[:1] + extra + CSV_COLUMNS[1:]).encode("utf-8"))]
        + ([(out("bench_buckets.csv"),
             csv_text(bucket_rows, BUCKET_COLUMNS[:1] + extra + BUCKET_COLUMNS[1:]).encode("utf-8"))]
           if bounds else [])
        + [(out("bench.json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
           (out("bench.md"), table + "\n\n" + notes + "\n")])
    print(table)
    print()
    print(notes)
    print(f"\nwrote {os.path.join(args.out, 'bench.csv')}, bench.md, bench.json"
          + (", bench_buckets.csv" if bounds else "") + f" and {len(rows)} .hyp files")
    return 0


def deploy_main(argv=None):
    """``kd-nmt deploy``: the deployment table (``kd-nmt bench --deploy``) as its own command."""
    argv = sys.argv[2:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print("kd-nmt deploy = kd-nmt bench --deploy: per checkpoint and engine (CTranslate2 int8, fairseq\n"
              "float32), BLEU/chrF, throughput, latency at batch 1, peak RSS and model size on raw text\n"
              "(OUT/deploy.md, .json, .csv). Options: those of `kd-nmt bench --help`.")
        return 0
    return main(["--deploy", *[a for a in argv if a != "--deploy"]])
