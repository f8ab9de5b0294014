"""What ``kd-nmt bench`` decodes: a binarized split, or raw text encoded as the training data was.

* ``--data-bin DIR --split NAME``: the split's binarized source; references from ``--reference``
  or the binarized target side, detokenized.
* ``--input SRC --reference REF``: raw text, one sentence per line. Each source line is
  normalised and sentencepiece-encoded exactly as ``data/prepare.py`` prepared the training data
  (``kd_nmt.common.spm_text``), then turned into dictionary ids: no ``fairseq-preprocess`` run.
  The dictionaries come from ``--data-bin`` or, without it, from the directory the first
  checkpoint was trained on (a shipped model's own folder); the sentencepiece model from
  ``--spm`` or from beside them (``DIR/spm.model``, ``DIR/../spm.model``). The languages from
  ``--source-lang/--target-lang``, else the files' suffixes (``test.de``/``test.en``) where the
  dictionaries have them, else the data-bin.

Either way the result holds the fairseq dataset (for the fairseq engine) and the source pieces
(for CTranslate2): the same tokens, whichever engine decodes them. Every check is done here,
before any decoding.
"""
import os
from dataclasses import dataclass

from kd_nmt.common.lines import TextFile, read_lines
from kd_nmt.errors import KDNMTError


@dataclass
class TestSet:
    task: object  # fairseq TranslationTask (the dictionaries)
    data_bin: str
    source_lang: str
    target_lang: str
    dataset: object  # LanguagePairDataset: the sources as dictionary ids
    token_lists: list  # the sources as pieces, EOS not included
    references: list  # detokenized reference text, one per line
    reference_desc: str
    source_words: list  # whitespace words of each (detokenized) source
    name: str  # the split's name, or the --input file
    detok: object  # kd_nmt.bench.decode.Detokenizer

    def __len__(self):
        return len(self.references)


def _suffix(path):
    return os.path.splitext(path)[1][1:] if path else ""


def _raw_languages(args, data_bin):
    """``(src, tgt)``: given, else the --input/--reference suffixes if both dictionaries exist."""
    from kd_nmt.common.data_bin import dictionary_path, infer_languages

    src, tgt = args.source_lang, args.target_lang
    if not src and os.path.isfile(dictionary_path(data_bin, _suffix(args.input))):
        src = _suffix(args.input)
    if not tgt and os.path.isfile(dictionary_path(data_bin, _suffix(args.reference))):
        tgt = _suffix(args.reference)
    if src and tgt and src != tgt:
        return infer_languages(data_bin, src, tgt)
    return infer_languages(data_bin, args.source_lang, args.target_lang)


def raw_data_bin(args):
    """The dictionaries' directory of a raw-text bench: --data-bin, else the first checkpoint's."""
    if args.data_bin:
        return args.data_bin
    from kd_nmt.checkpoint import load_checkpoint
    from kd_nmt.common.dictionaries import checkpoint_data_dir

    directory = checkpoint_data_dir(load_checkpoint(args.checkpoint[0]))
    if not directory or not os.path.isdir(directory):
        raise KDNMTError(
            f"checkpoint {args.checkpoint[0]!r} does not name an existing data directory "
            f"({directory!r}); give the dictionaries with --data-bin DIR"
        )
    return directory


def raw_spm_model(args, data_bin):
    from kd_nmt.checkpoint import load_checkpoint
    from kd_nmt.common.dictionaries import checkpoint_data_dir
    from kd_nmt.common.spm_text import find_spm_model

    if args.spm:
        return args.spm
    found = find_spm_model(data_bin)
    if found is None:
        trained_on = checkpoint_data_dir(load_checkpoint(args.checkpoint[0]))
        found = find_spm_model(trained_on) if trained_on and os.path.isdir(trained_on) else None
    if found is None:
        raise KDNMTError(
            f"no sentencepiece model beside {data_bin!r} ({os.path.join(data_bin, 'spm.model')} "
            "or its parent's) nor beside the checkpoint's data: give it with --spm MODEL"
        )
    return found


def load_raw(args):
    """``--input``/``--reference``: raw text, checked, normalised and encoded."""
    from kd_nmt.bench.decode import Detokenizer, pieces_dataset
    from kd_nmt.common.dictionaries import load_dictionary
    from kd_nmt.common.spm_text import check_spm_matches, encode_lines
    from kd_nmt.common.task_setup import translation_task

    if args.reference is None:
        raise KDNMTError("--input needs --reference: the raw reference text, one line per input line")
    source = TextFile(args.input, "input")
    reference = TextFile(args.reference, "reference")
    if len(source) != len(reference):
        raise KDNMTError(
            f"--reference {args.reference!r} has {len(reference)} lines but --input {args.input!r} "
            f"has {len(source)}; they must be line-aligned"
        )
    if not len(source):
        raise KDNMTError(f"--input {args.input!r} is empty")
    data_bin = raw_data_bin(args)
    src, tgt = _raw_languages(args, data_bin)
    spm_path = raw_spm_model(args, data_bin)
    for lang in (src, tgt):
        path = os.path.join(data_bin, f"dict.{lang}.txt")
        check_spm_matches(load_dictionary(path), path, spm_path)
    task = translation_task(data_bin, src, tgt)
    token_lists = encode_lines(source.lines, spm_path, src, args.normalize)
    return TestSet(
        task=task, data_bin=data_bin, source_lang=src, target_lang=tgt,
        dataset=pieces_dataset(task, token_lists), token_lists=token_lists,
        references=reference.lines, reference_desc=args.reference,
        source_words=[len(line.split()) for line in source.lines], name=os.path.basename(args.input),
        detok=Detokenizer(spm_path),
    )


def load_binarized(args):
    """``--data-bin``/``--split``: the binarized split (references from --reference or its target)."""
    from kd_nmt.bench.decode import Detokenizer, side_texts
    from kd_nmt.common.data_bin import split_languages
    from kd_nmt.common.task_setup import load_split, translation_task

    split = args.split or "test"
    if not args.data_bin:
        raise KDNMTError("give --data-bin DIR (with --split), or raw text with --input and --reference")
    src, tgt, has_target = split_languages(args.data_bin, split, args.source_lang, args.target_lang)
    if args.reference is None and not has_target:
        raise KDNMTError(
            f"split {split!r} in {args.data_bin!r} has no target side ({tgt}); "
            "give the references with --reference FILE")
    detok = Detokenizer(args.spm, args.remove_bpe)
    task = translation_task(args.data_bin, src, tgt)
    dataset = load_split(task, split)
    n = len(dataset)
    if n == 0:
        raise KDNMTError(f"split {split!r} in {args.data_bin!r} is empty")
    if args.reference is not None:
        references = read_lines(args.reference, "reference")
        if len(references) != n:
            raise KDNMTError(
                f"reference line count mismatch: {args.reference!r} has {len(references)} lines, "
                f"split {split!r} of {args.data_bin!r} has {n} sentences")
        reference_desc = args.reference
    else:
        references = side_texts(dataset.tgt, task.target_dictionary, detok)
        reference_desc = f"{args.data_bin} {split}.{tgt} (binarized, detokenized)"
    src_dict = task.source_dictionary
    token_lists = [src_dict.string(dataset.src[i]).split() for i in range(n)]
    return TestSet(
        task=task, data_bin=args.data_bin, source_lang=src, target_lang=tgt, dataset=dataset,
        token_lists=token_lists, references=references, reference_desc=reference_desc,
        source_words=[len(s.split()) for s in side_texts(dataset.src, src_dict, detok)], name=split,
        detok=detok,
    )


def load_test_set(args):
    if args.input is not None:
        if args.split is not None:
            raise KDNMTError("give either --split (a binarized split) or --input (raw text), not both")
        return load_raw(args)
    return load_binarized(args)
