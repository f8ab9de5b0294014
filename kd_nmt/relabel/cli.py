"""``kd-nmt relabel``: teacher beam search over a corpus, for sequence-level KD (Seq-KD).

Everything is checked before any work starts (files, dictionaries, options, writability, an
existing work directory); a user error is one ``KDNMTError`` line, and nothing is written.
Then the shard's lines are decoded chunk by chunk into ``OUT.chunks/`` (see
``kd_nmt.relabel.chunks``), and ``OUT`` is assembled atomically from the chunks.
"""
import math
import os
import sys
import tempfile
import time

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.data_bin import dictionary_path, infer_languages
from kd_nmt.common.detokenize import REMOVE_BPE
from kd_nmt.common.hashing import sha256_file
from kd_nmt.common.lines import TextFile
from kd_nmt.common.logging_setup import status
from kd_nmt.errors import KDNMTError
from kd_nmt.relabel import binarize as binarize_mod
from kd_nmt.relabel.chunks import WorkDir
from kd_nmt.relabel.corpus import shard_range
from kd_nmt.relabel.keep_nbest import main as keep_nbest_main
from kd_nmt.relabel.keep_nbest import repeated, top_hypotheses, write_lines_atomic

BACKENDS = ("fairseq", "ctranslate2")

EXAMPLES = """
Input and output are in the dictionaries' token space (the text you give fairseq-preprocess,
e.g. sentencepiece pieces): line i of OUT is the teacher's translation of line i of SRC, for
every line, in order. Empty lines give empty lines; a source longer than the teacher's
max source positions is truncated (counted in the summary), never skipped.

examples:
  # Seq-KD targets for the train split, then a trainable data-bin aligned with the gold one
  kd-nmt relabel --teacher teacher/checkpoint_best.pt --data-bin data-bin \\
      --input tok/train.de --output kd/train.en --beam 5 --binarize-to data-bin-kd

  # an ensemble teacher (probabilities averaged), 4 shards on 4 machines, then join them
  kd-nmt relabel --teacher t1.pt:t2.pt --data-bin data-bin --input tok/train.de \\
      --output kd/train.en.2 --num-shards 4 --shard-id 2
  cat kd/train.en.{0,1,2,3} > kd/train.en
  kd-nmt relabel binarize --data-bin data-bin --source tok/train.de --target kd/train.en \\
      --destdir data-bin-kd

  # Seq-Inter: keep the 5-best hypothesis closest (sentence BLEU) to the gold target
  kd-nmt relabel --teacher t.pt --data-bin data-bin --input tok/train.de --output kd/train.en \\
      --nbest 5 --reference tok/train.en --select-by-reference bleu --nbest-output kd/nbest.jsonl

  # train on the top 4 hypotheses per source: each source line 4 times, aligned, binarized
  kd-nmt relabel --teacher t.pt --data-bin data-bin --input tok/train.de --output kd/train.en \
      --nbest 4 --keep-nbest 4 --output-source kd/train.de --binarize-to data-bin-kd-nbest4

  # CTranslate2 (int8) decoding: converted once, cached as t.pt.ct2-int8/
  kd-nmt relabel --backend ctranslate2 --teacher t.pt --data-bin data-bin \\
      --input tok/train.de --output kd/train.en

Resume: the work is kept in OUT.chunks/ while it runs; rerunning the same command after a
crash or kill skips the finished chunks and gives byte-identical output. A rerun with another
input, teacher or decoding option is refused (--restart discards the old work).
"""


def build_parser():
    p = ArgumentParser(
        prog="kd-nmt relabel",
        description="Translate a corpus with a teacher (beam search) for sequence-level KD.",
        epilog=EXAMPLES,
    )
    g = p.add_argument_group("data")
    g.add_argument("--teacher", required=True, metavar="T.pt[:T2.pt]",
                   help="teacher checkpoint(s); colon-separated = ensemble (fairseq backend)")
    g.add_argument("--data-bin", required=True, metavar="DIR",
                   help="data-bin holding the teacher's dictionaries dict.SRC.txt / dict.TGT.txt")
    g.add_argument("--input", required=True, metavar="SRC", help="source text, one sentence a line")
    g.add_argument("--output", required=True, metavar="OUT", help="relabeled target text")
    g.add_argument("--source-lang", "-s", default=None, metavar="L", help="default: inferred from --data-bin")
    g.add_argument("--target-lang", "-t", default=None, metavar="L", help="default: inferred from --data-bin")

    g = p.add_argument_group("decoding")
    g.add_argument("--backend", default="fairseq", choices=BACKENDS,
                   help="fairseq SequenceGenerator (default) or CTranslate2")
    g.add_argument("--beam", metavar="N", type=int, default=5, help="beam size (default 5)")
    g.add_argument("--lenpen", metavar="X", type=float, default=1.0, help="length penalty (default 1.0)")
    g.add_argument("--max-len-a", metavar="A", type=float, default=0.0,
                   help="max output length = a * source length + b (default a=0)")
    g.add_argument("--max-len-b", metavar="B", type=int, default=200, help="(default b=200)")
    g.add_argument("--batch-tokens", metavar="N", type=int, default=4000,
                   help="padded source tokens per batch (default 4000)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="default: cuda if available")
    g.add_argument("--threads", metavar="N", type=int, default=0, help="CPU threads (default: library default)")
    g.add_argument("--bf16", action="store_true",
                   help="fairseq backend on the CPU: the teacher's forward under bfloat16 autocast "
                        "(float32 weights and scores; faster on CPUs with AVX-512 BF16 or AMX). "
                        "CTranslate2 has its own: --ct2-quantization bfloat16")
    g.add_argument("--ct2-quantization", metavar="TYPE", default="int8",
                   help="CTranslate2 weight type (default int8; e.g. float32, int8_float16)")
    g.add_argument("--ct2-dir", default=None, metavar="DIR",
                   help="where the converted teacher is cached (default: T.pt.ct2-QUANT/)")

    g = p.add_argument_group("work, resume, shards")
    g.add_argument("--chunk-size", metavar="N", type=int, default=5000,
                   help="lines per chunk, the unit of resumption (default 5000)")
    g.add_argument("--num-shards", metavar="N", type=int, default=1, help="split the input into N contiguous shards")
    g.add_argument("--shard-id", metavar="I", type=int, default=0, help="which shard this run does (0..N-1)")
    g.add_argument("--restart", action="store_true", help="discard an existing OUT.chunks/ work dir")
    g.add_argument("--keep-chunks", action="store_true", help="keep OUT.chunks/ after success")
    g.add_argument("--no-progress", "--no-progress-bar", dest="no_progress", action="store_true",
                   help="no progress bar (--no-progress-bar: an alias)")

    g = p.add_argument_group("n-best and Seq-Inter")
    g.add_argument("--nbest", type=int, default=1, metavar="K", help="hypotheses kept per line")
    g.add_argument("--nbest-output", default=None, metavar="FILE",
                   help="JSONL, one object per input line: all K hypotheses with their scores")
    g.add_argument("--reference", default=None, metavar="REF",
                   help="gold targets (token space, line-aligned with the whole --input)")
    g.add_argument("--select-by-reference", default=None, choices=("bleu", "chrf"),
                   help="output the n-best hypothesis with the best sentence BLEU/chrF against "
                        "REF (default bleu when --reference is given)")
    g.add_argument("--select-by-mbr", default=None, choices=("chrf", "bleu"),
                   help="output the n-best hypothesis with the highest expected sentence chrF/BLEU "
                        "against the other hypotheses (MBR; no reference needed)")
    g.add_argument("--remove-bpe", default="sentencepiece", choices=REMOVE_BPE,
                   help="detokenization before scoring against REF (default sentencepiece)")
    g.add_argument("--keep-nbest", type=int, default=None, metavar="N",
                   help="OUT gets the N best hypotheses of every source line (N <= --nbest), "
                        "line i*N+r = rank r of source i; --output-source the source lines, each "
                        "N times (see docs/relabel.md: N x the data-bin)")
    g.add_argument("--output-source", default=None, metavar="FILE",
                   help="with --keep-nbest: the source repeated, aligned with OUT (default OUT.source)")

    g = p.add_argument_group("training data")
    g.add_argument("--binarize-to", default=None, metavar="DIR",
                   help="after relabeling, fairseq-preprocess (input, output) with --data-bin's "
                        "dictionaries into DIR, plus --data-bin's other splits")
    g.add_argument("--binarize-workers", metavar="N", type=int, default=min(os.cpu_count() or 1, 8),
                   help="fairseq-preprocess --workers (default: cores, at most 8)")
    return p


# ------------------------------------------------------------------------------------------
# checks (nothing is created here)
# ------------------------------------------------------------------------------------------
def _check_writable(path, what):
    if os.path.isdir(path):
        raise KDNMTError(f"{what} {path!r} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        problem = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise KDNMTError(f"cannot write {what} {path!r}: {parent!r} {problem}")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".kd-nmt-write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise KDNMTError(f"cannot write {what} {path!r}: {exc.strerror}") from None


def _device(name):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise KDNMTError("--device cuda: no CUDA device is available")
    return name


class Job:
    """One validated relabel run (one shard)."""

    def __init__(self, args):
        self.args = args
        a = args
        check_minimums(
            ("--beam", a.beam, 1), ("--nbest", a.nbest, 1), ("--batch-tokens", a.batch_tokens, 1),
            ("--chunk-size", a.chunk_size, 1), ("--num-shards", a.num_shards, 1),
            ("--max-len-b", a.max_len_b, 1), ("--binarize-workers", a.binarize_workers, 1),
            ("--keep-nbest", a.keep_nbest, 1),
        )
        if a.max_len_a < 0 or a.threads < 0:
            raise KDNMTError("--max-len-a and --threads must not be negative")
        if not 0 <= a.shard_id < a.num_shards:
            raise KDNMTError(f"--shard-id must be in 0..{a.num_shards - 1}, got {a.shard_id}")
        if a.nbest > a.beam:
            raise KDNMTError(f"--nbest {a.nbest} is larger than --beam {a.beam}")
        if a.select_by_reference and not a.reference:
            raise KDNMTError("--select-by-reference needs --reference REF")
        if a.reference and a.nbest < 2:
            raise KDNMTError("--reference selects among n-best hypotheses: give --nbest K (K >= 2)")
        if a.select_by_mbr and (a.reference or a.nbest < 2):
            raise KDNMTError("--select-by-mbr selects among n-best hypotheses without a reference: "
                             "give --nbest K (K >= 2) and no --reference")
        self.keep = a.keep_nbest or 1  # output lines per source line
        if a.keep_nbest:
            if a.keep_nbest > a.nbest:
                raise KDNMTError(f"--keep-nbest {a.keep_nbest} needs --nbest {a.keep_nbest} or more "
                                 f"(got --nbest {a.nbest})")
            if a.reference or a.select_by_mbr:
                raise KDNMTError("--keep-nbest keeps the top N hypotheses in beam order; it does not "
                                 "combine with selecting one (--reference, --select-by-mbr)")
            a.output_source = a.output_source or a.output + ".source"
        elif a.output_source:
            raise KDNMTError("--output-source is the repeated source of --keep-nbest N: add --keep-nbest")
        if a.nbest > 1 and not (a.reference or a.nbest_output or a.select_by_mbr or a.keep_nbest):
            raise KDNMTError(
                f"--nbest {a.nbest} without --nbest-output or --reference would keep only the "
                "1-best; add --nbest-output FILE and/or --reference REF"
            )
        self.metric = (a.select_by_reference or "bleu") if a.reference else None
        # the n-best JSONL key of the selection scores
        self.score_key = f"mbr_{a.select_by_mbr}" if a.select_by_mbr else self.metric
        if a.binarize_to and a.num_shards > 1:
            raise KDNMTError(
                "--binarize-to needs the whole corpus: join the shard outputs with `cat`, then "
                "run `kd-nmt relabel binarize` (see its --help)"
            )
        if a.bf16 and a.backend == "ctranslate2":
            raise KDNMTError(
                "--bf16 is bfloat16 autocast of the fairseq backend; the ctranslate2 backend "
                "computes in bfloat16 with --ct2-quantization bfloat16 (or int8_bfloat16)"
            )
        if a.backend == "ctranslate2":
            from kd_nmt.common.ct2_conversion import QUANTIZATIONS

            if a.ct2_quantization not in QUANTIZATIONS:
                raise KDNMTError(
                    f"unknown --ct2-quantization {a.ct2_quantization!r}; choose from "
                    f"{', '.join(QUANTIZATIONS)}"
                )

        # teacher(s)
        self.teachers = [t for t in a.teacher.split(":") if t]
        if not self.teachers:
            raise KDNMTError("--teacher is empty")
        for path in self.teachers:
            if not os.path.isfile(path):
                raise KDNMTError(f"teacher checkpoint not found: {path!r}")
        if a.backend == "ctranslate2" and len(self.teachers) > 1:
            raise KDNMTError(
                f"the ctranslate2 backend decodes a single model, not an ensemble of "
                f"{len(self.teachers)}; use --backend fairseq for ensembles"
            )

        # data-bin, input, reference
        self.src, self.tgt = infer_languages(a.data_bin, a.source_lang, a.target_lang)
        self.input = TextFile(a.input, "input")
        self.reference = None
        if a.reference:
            self.reference = TextFile(a.reference, "reference")
            if len(self.reference) != len(self.input):
                raise KDNMTError(
                    f"--reference {a.reference!r} has {len(self.reference)} lines but --input "
                    f"{a.input!r} has {len(self.input)}; they must be line-aligned"
                )

        # outputs
        outputs = [("output", a.output)] + ([("--nbest-output", a.nbest_output)] if a.nbest_output else [])
        outputs += [("--output-source", a.output_source)] if a.output_source else []
        real = {os.path.realpath(p) for p in (a.input, a.reference) if p}
        for what, path in outputs:
            if os.path.realpath(path) in real:
                raise KDNMTError(f"{what} {path!r} would overwrite an input file")
            _check_writable(path, what)
        if len({os.path.realpath(path) for _, path in outputs}) < len(outputs):
            raise KDNMTError(f"two outputs are the same file: {', '.join(p for _, p in outputs)}")
        if a.binarize_to:
            binarize_mod.check_destdir(a.binarize_to)
        self.device = _device(a.device)
        if a.bf16 and self.device != "cpu":
            raise KDNMTError("--bf16 is CPU bfloat16 autocast: add --device cpu")
        if a.backend == "ctranslate2":
            from kd_nmt.common.ct2_conversion import check_model_dir_writable, default_model_dir

            self.ct2_dir = a.ct2_dir or default_model_dir(self.teachers[0], a.ct2_quantization)
            check_model_dir_writable(self.ct2_dir)

        # the work directory: refuse other work before loading anything heavy
        self.start, self.end = shard_range(len(self.input), a.num_shards, a.shard_id)
        self.workdir = WorkDir(a.output + ".chunks", *self._manifest())
        self.workdir.check(restart=a.restart)

        # the teacher, checked against the dictionaries, and the backend
        self._load_backend()

    def _manifest(self):
        a = self.args
        teachers = []
        for path in self.teachers:
            st = os.stat(path)
            teachers.append({"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        manifest = {
            "input_sha256": self.input.sha256,
            "input_lines": len(self.input),
            "shard": [a.num_shards, a.shard_id],
            "lines": [self.start, self.end],
            "chunk_size": a.chunk_size,
            "backend": a.backend,
            "ct2_quantization": a.ct2_quantization if a.backend == "ctranslate2" else None,
            "teacher": teachers,
            "languages": [self.src, self.tgt],
            "dictionaries": [
                sha256_file(dictionary_path(a.data_bin, lang)) for lang in (self.src, self.tgt)
            ],
            "beam": a.beam, "lenpen": a.lenpen, "max_len_a": a.max_len_a, "max_len_b": a.max_len_b,
            "nbest": a.nbest,
            "nbest_output": bool(a.nbest_output),
            "reference_sha256": self.reference.sha256 if self.reference else None,
            "select_by_reference": self.metric,
            "remove_bpe": a.remove_bpe if self.reference else None,
        }
        if a.select_by_mbr:  # only then, so work dirs of earlier versions still resume
            manifest.update(select_by_mbr=a.select_by_mbr, remove_bpe=a.remove_bpe)
        if a.bf16:  # only then, so work dirs of earlier versions still resume
            manifest.update(bf16=True)
        if a.keep_nbest:  # likewise
            manifest.update(keep_nbest=a.keep_nbest)
        binding = tuple(manifest)
        # informative only: they do not change what is computed
        manifest.update(input=os.path.abspath(a.input), batch_tokens=a.batch_tokens, device=a.device)
        return manifest, binding

    def _load_backend(self):
        import torch

        from kd_nmt.checkpoint import load_checkpoint
        from kd_nmt.common.task_setup import translation_task
        from kd_nmt.teacher import check_teacher_dictionaries

        a = self.args
        if a.threads:
            torch.set_num_threads(a.threads)
        task = translation_task(a.data_bin, self.src, self.tgt)
        self.src_dict = task.source_dictionary
        state = None
        for path in self.teachers:
            state = load_checkpoint(path)
            try:
                check_teacher_dictionaries(
                    path, state, task.source_dictionary, task.target_dictionary, (self.src, self.tgt)
                )
            except KDNMTError as exc:  # "student" there = the --data-bin here
                raise KDNMTError(f"--data-bin {a.data_bin!r} does not match the teacher: {exc}") from None
        if a.backend == "fairseq":
            from kd_nmt.relabel.fairseq_backend import FairseqBackend

            del state
            self.backend = FairseqBackend(
                self.teachers, task, beam=a.beam, lenpen=a.lenpen, max_len_a=a.max_len_a,
                max_len_b=a.max_len_b, nbest=a.nbest, batch_tokens=a.batch_tokens, device=self.device,
                bf16=a.bf16,
            )
        else:
            from kd_nmt.relabel.ct2_backend import CT2Backend

            self.backend = CT2Backend(
                self.teachers[0], state, a.data_bin, self.src, self.tgt,
                quantization=a.ct2_quantization, model_dir=self.ct2_dir, beam=a.beam,
                lenpen=a.lenpen, max_len_a=a.max_len_a, max_len_b=a.max_len_b, nbest=a.nbest,
                batch_tokens=a.batch_tokens, device=self.device, threads=a.threads,
            )
        if self.reference is not None:
            from kd_nmt.relabel.select import Selector

            self.selector = Selector(self.metric, a.remove_bpe)
        elif a.select_by_mbr:
            from kd_nmt.relabel.mbr import MBRSelector

            self.selector = MBRSelector(a.select_by_mbr, a.remove_bpe)

    # --------------------------------------------------------------------------------------
    def _warn_unknown_tokens(self):
        unk = self.src_dict.unk()
        tokens = unknown = 0
        for line in self.input.lines[self.start: min(self.end, self.start + 1000)]:
            for tok in line.split():
                tokens += 1
                unknown += self.src_dict.index(tok) == unk
        if tokens and unknown / tokens > 0.1:
            _log(
                f"warning: {100 * unknown / tokens:.0f}% of the input's tokens are not in "
                f"dict.{self.src}.txt: is --input in the dictionaries' token space "
                "(e.g. sentencepiece pieces, as given to fairseq-preprocess)?"
            )

    def _chunk(self, lo, hi, bar):
        """Decode input lines ``[lo, hi)``: (output lines, stats, n-best records or None)."""
        a = self.args
        started = time.perf_counter()
        max_src = self.backend.max_source_tokens
        stats = {"lines": hi - lo, "empty": 0, "truncated": 0, "tokens": 0, "unknown": 0}
        unk = self.src_dict.unk()
        todo, sources = [], []
        for i, line in enumerate(self.input.lines[lo:hi]):
            tokens = line.split()
            if not tokens:
                stats["empty"] += 1
                continue
            stats["tokens"] += len(tokens)
            stats["unknown"] += sum(self.src_dict.index(t) == unk for t in tokens)
            if max_src is not None and len(tokens) > max_src:
                tokens = tokens[:max_src]  # truncation keeps the beginning (and then EOS)
                stats["truncated"] += 1
            todo.append(i)
            sources.append(tokens)
        bar.update(stats["empty"])
        nbests = self.backend.translate(sources, progress=bar.update)

        outputs = [[""] * self.keep for _ in range(hi - lo)]  # per source line: its output lines
        records = [{"id": lo + i, "hypotheses": [], "selected": None} for i in range(hi - lo)] \
            if a.nbest_output else None
        for i, hyps in zip(todo, nbests):
            selected, metric_scores = 0, None
            if self.reference is not None:
                metric_scores = self.selector.scores([h for h, _ in hyps], self.reference.lines[lo + i])
                selected = self.selector.best(metric_scores)
            elif a.select_by_mbr:
                metric_scores = self.selector.scores([h for h, _ in hyps])
                selected = self.selector.best(metric_scores)
            if a.keep_nbest:
                outputs[i] = top_hypotheses([h for h, _ in hyps], self.keep, self.input.lines[lo + i],
                                            lo + i, f"the {a.backend} backend")
            else:
                outputs[i] = [hyps[selected][0]]
            if records is not None:
                entries = []
                for j, (text, score) in enumerate(hyps):
                    entry = {"tokens": text, "score": round(score, 6)}
                    if metric_scores is not None:
                        entry[self.score_key] = round(metric_scores[j], 4)
                    entries.append(entry)
                records[i].update(hypotheses=entries, selected=selected)
        stats["seconds"] = round(time.perf_counter() - started, 3)
        return [line for group in outputs for line in group], stats, records

    def run(self):
        from tqdm import tqdm

        a = self.args
        wd = self.workdir.open(restart=a.restart)
        size = a.chunk_size
        n_lines = self.end - self.start
        n_chunks = math.ceil(n_lines / size)
        bounds = [(self.start + k * size, min(self.start + (k + 1) * size, self.end)) for k in range(n_chunks)]
        done = []
        for k, (lo, hi) in enumerate(bounds):
            problem = wd.intact(k, (hi - lo) * self.keep, nbest=bool(a.nbest_output))
            if problem and wd.done(k):  # cut short or edited: redo it rather than misalign OUT
                _log(f"chunk {k} of {wd.path} is damaged ({problem}): redoing it")
                wd.discard(k)
            done.append(problem is None)
        resumed = sum(hi - lo for (lo, hi), d in zip(bounds, done) if d)
        if resumed:
            _log(f"resuming: {sum(done)}/{n_chunks} chunks ({resumed} lines) already done in {wd.path}")
        self._warn_unknown_tokens()
        totals = {"lines": 0, "empty": 0, "truncated": 0, "tokens": 0, "unknown": 0}
        started = time.perf_counter()
        with tqdm(total=n_lines, initial=resumed, unit="sent", desc="relabel", file=sys.stderr,
                  disable=a.no_progress, dynamic_ncols=True, smoothing=0.05) as bar:
            for k, (lo, hi) in enumerate(bounds):
                if done[k]:
                    stats = wd.read_stats(k)
                else:
                    outputs, stats, records = self._chunk(lo, hi, bar)
                    wd.write_chunk(k, outputs, stats, records)
                for key in totals:
                    totals[key] += stats[key]
        seconds = time.perf_counter() - started
        source = a.input
        if a.keep_nbest:  # before OUT, so that an existing OUT means a finished run (recipes)
            source = a.output_source
            write_lines_atomic(source, repeated(self.input.lines[self.start:self.end], self.keep))
        wd.assemble(n_chunks, a.output, a.nbest_output)
        if a.binarize_to:
            binarize_mod.binarize(
                a.data_bin, self.src, self.tgt, source, a.output, a.binarize_to,
                workers=a.binarize_workers, expected_lines=len(self.input) * self.keep,
                repeat=self.keep,
            )
        if a.keep_chunks:
            wd.close()
        else:
            wd.remove()
        decoded = n_lines - resumed
        unk_pct = 100.0 * totals["unknown"] / max(totals["tokens"], 1)
        _log(
            f"{n_lines} lines ({totals['empty']} empty, {totals['truncated']} truncated to "
            f"{self.backend.max_source_tokens} tokens, {resumed} resumed from earlier runs, "
            f"{unk_pct:.2f}% unknown source tokens) in {seconds:.1f} s, "
            f"{decoded / max(seconds, 1e-9):.1f} sents/s [{a.backend}{', bf16' if a.bf16 else ''}, "
            f"beam {a.beam}] -> {a.output}"
            + (f" ({self.keep} hypotheses a line; sources repeated in {a.output_source})"
               if a.keep_nbest else "")
        )
        return 0


_log = status("relabel")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "binarize":
        return binarize_mod.main(argv[1:])
    if argv and argv[0] == "keep-nbest":
        return keep_nbest_main(argv[1:])
    args = build_parser().parse_args(argv)
    job = Job(args)
    try:
        return job.run()
    except KeyboardInterrupt:
        _log(f"interrupted; finished chunks are kept in {job.workdir.path}: rerun the same "
             "command to resume")
        return 130
    finally:  # a failed run (a full disk) releases its work folder: a rerun may resume it
        job.workdir.close()
