"""What ``kd-nmt advise`` measures about a teacher, its training data and a candidate student.

One function, ``measure``, runs every measurement on a sample of the training split; the same
function measures the study's cells for the fitted model (``scripts/measure_advise_cells.py``),
so the features a prediction reads are computed the way the model's training features were.
``setting_features`` then adds what belongs to one student: its size relative to the teacher
and whether it will be decoded with beam search. The model reads ``MODEL_FEATURES``.
"""
import time

# the features of one setting, in the order the model (kd_nmt/advise/model.json) reads them
MODEL_FEATURES = (
    "param_ratio",  # student parameters / teacher parameters
    "data_complexity",  # Zhou et al.'s C(d), nats (kd_nmt.advise.alignment)
    "teacher_entropy",  # teacher's mean per-token entropy under teacher forcing, nats
    "teacher_gold_bleu",  # BLEU of the teacher's beam output against the gold training targets
    "teacher_beam_gain",  # teacher's BLEU at beam minus at greedy, same sentences
    "student_beam_search",  # 1 if the student is decoded with beam search, 0 if greedy
)

# one line each for the report: what a feature is, and its unit
DESCRIPTIONS = {
    "param_ratio": "student / teacher parameters",
    "data_complexity": "data complexity C(d) (Zhou et al.), nats",
    "teacher_entropy": "teacher per-token entropy, nats",
    "teacher_top1": "teacher top-1 mass",
    "teacher_gold_bleu": "teacher beam output vs gold, BLEU",
    "teacher_beam_gain": "teacher beam - greedy, BLEU",
    "student_beam_search": "student decoded with beam search",
}


def measure(teacher_path, data_bin, split="train", sample_size=5000, decode_sentences=200, beam=5, seed=1,
            em_iterations=5, max_tokens=4000, source_lang=None, target_lang=None, progress=True):
    """Every property of the (teacher, data) pair, as a flat dict (see docs/advise.md)."""
    from tqdm import tqdm

    from kd_nmt.advise.alignment import data_complexity
    from kd_nmt.advise.sample import load_sample
    from kd_nmt.advise.teacher_forcing import teacher_forcing_stats
    from kd_nmt.advise.teacher_output import head, teacher_vs_gold
    from kd_nmt.bench.cli import check_checkpoint
    from kd_nmt.bench.decode import count_parameters
    from kd_nmt.checkpoint import load_models

    seconds = {}
    start = time.perf_counter()
    sample = load_sample(data_bin, split, sample_size, seed, source_lang, target_lang)
    langs = (sample.task.cfg.source_lang, sample.task.cfg.target_lang)
    check_checkpoint(teacher_path, sample.task, data_bin, langs)
    models, _ = load_models([teacher_path], task=sample.task)
    teacher = models[0]
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    forced = teacher_forcing_stats(teacher, sample.dataset, max_tokens, progress)
    seconds["teacher_forcing"] = time.perf_counter() - start

    start = time.perf_counter()
    with tqdm(total=em_iterations, desc="IBM-1 EM", unit="it", disable=not progress) as bar:
        complexity, source_vocab = data_complexity(list(zip(sample.source_words, sample.target_words)),
                                                   em_iterations, on_iteration=lambda: bar.update(1))
    seconds["alignment"] = time.perf_counter() - start

    start = time.perf_counter()
    decoded = teacher_vs_gold(teacher, sample.task, head(sample.dataset, decode_sentences), sample.references,
                              beam=beam, max_tokens=max_tokens, progress=progress)
    seconds["decoding"] = time.perf_counter() - start

    return {
        "teacher": teacher_path, "teacher_params": count_parameters(teacher),
        "data_bin": str(data_bin), "split": split, "source_lang": langs[0], "target_lang": langs[1],
        "split_sentences": sample.split_size, "sample_sentences": len(sample), "seed": seed,
        "teacher_entropy": forced["entropy"], "teacher_top1": forced["top1"],
        "teacher_gold_nll": forced["gold_nll"], "target_positions": forced["positions"],
        "skipped_too_long": forced["skipped"],
        "data_complexity": complexity, "source_vocabulary": source_vocab, "em_iterations": em_iterations,
        "decoded_sentences": decoded["sentences"], "beam": beam,
        "teacher_greedy_bleu": decoded["greedy"]["bleu"], "teacher_greedy_chrf": decoded["greedy"]["chrf"],
        "teacher_gold_bleu": decoded["beam"]["bleu"], "teacher_gold_chrf": decoded["beam"]["chrf"],
        "teacher_beam_gain": decoded["beam"]["bleu"] - decoded["greedy"]["bleu"],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def setting_features(measured, student_params, student_beam):
    """``MODEL_FEATURES`` of one student (``student_params``, decoded at ``student_beam``)."""
    own = {"param_ratio": student_params / measured["teacher_params"],
           "student_beam_search": 1.0 if student_beam > 1 else 0.0}
    return {name: float(own[name] if name in own else measured[name]) for name in MODEL_FEATURES}
