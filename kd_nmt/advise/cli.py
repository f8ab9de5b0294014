"""``kd-nmt advise``: which KD method to try first, from cheap measurements of the setting.

Measures the teacher and a sample of the training split (``kd_nmt.advise.features``), counts
each candidate student's parameters (``kd_nmt.advise.architecture``), and prints, per student
and method, the fitted model's predicted BLEU difference over no KD with its interval, the
recommendation and the measurements that drove it (``kd_nmt.advise.model``). Every input is
checked before the teacher is loaded; ``--json OUT`` writes the whole report.
"""
import json
import os
import sys
import time

from kd_nmt.common.args import ArgumentParser, check_minimums
from kd_nmt.common.atomic import atomic_write
from kd_nmt.common.logging_setup import quiet_logging
from kd_nmt.errors import KDNMTError

EXAMPLES = """
examples:
  # the Multi30k teacher and three from-scratch student sizes, decoded with beam 5
  kd-nmt advise --teacher models/teacher-multi30k/model.pt --data-bin work/multi30k/data/bin \\
      --student-arch transformer_kd_narrow transformer_kd_tiny transformer_kd_micro --json advise.json

  # a student decoded greedily, a smaller sample (faster, noisier)
  kd-nmt advise --teacher models/teacher-deen/model.pt --data-bin work/quickstart/data/bin \\
      --student-arch transformer_kd_small_d1 --student-beam 1 --sample 2000

what it measures (on --sample sentence pairs of --split, the first --decode-sentences decoded):
  the student/teacher parameter ratio; the teacher's per-token entropy and top-1 mass under
  teacher forcing on the gold targets; the data complexity of Zhou et al. (2020): IBM model 1
  (--em-iterations EM steps, numpy), then the mean over source words of H(target word | source
  word); the teacher's greedy and beam output against the gold targets (sacreBLEU) and its
  beam - greedy gap. The model (kd_nmt/advise/model.json, scripts/fit_advise.py) was fitted on
  the project's own study cells: read docs/advise.md for how well it predicts, and where not.
"""


def build_parser():
    parser = ArgumentParser(
        prog="kd-nmt advise",
        description="Predict each KD method's BLEU gain over no KD for candidate students, from cheap "
        "measurements of the teacher and the training data, and recommend one.",
        epilog=EXAMPLES,
    )
    parser.add_argument("--teacher", required=True, metavar="PT", help="the teacher checkpoint (a trusted file)")
    parser.add_argument("--data-bin", required=True, metavar="DIR",
                        help="fairseq-preprocess output with the training split")
    parser.add_argument("--student-arch", nargs="+", required=True, metavar="ARCH",
                        help="candidate student architectures (transformer_kd_* or any fairseq architecture)")
    parser.add_argument("--split", default="train", help="the split to sample (default: train)")
    parser.add_argument("--source-lang", default=None, help="source language (default: from the file names)")
    parser.add_argument("--target-lang", default=None, help="target language (default: from the file names)")
    parser.add_argument("--sample", type=int, default=5000, metavar="N",
                        help="sentence pairs measured, drawn at random (default: 5000; all if the split is smaller)")
    parser.add_argument("--decode-sentences", type=int, default=200, metavar="N",
                        help="of those, how many the teacher translates (greedy and beam; default: 200)")
    parser.add_argument("--beam", type=int, default=5, help="the teacher's beam for its output (default: 5)")
    parser.add_argument("--student-beam", type=int, default=5,
                        help="the beam the students will be decoded with; 1 = greedy (default: 5)")
    parser.add_argument("--em-iterations", type=int, default=5, metavar="N",
                        help="IBM model 1 EM iterations (default: 5)")
    parser.add_argument("--seed", type=int, default=1, help="the sample's seed (default: 1)")
    parser.add_argument("--batch-tokens", type=int, default=4000, metavar="N", help="tokens per batch (default: 4000)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--model", default=None, metavar="JSON", help="a refitted model (default: the shipped one)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON to OUT")
    parser.add_argument("--no-progress", "--no-progress-bar", dest="no_progress", action="store_true",
                        help="no progress bars")
    return parser


def validate_args(args):
    from kd_nmt.advise.architecture import check_architectures
    from kd_nmt.common.data_bin import check_data_bin

    check_minimums(("--sample", args.sample, 1), ("--decode-sentences", args.decode_sentences, 1),
                   ("--beam", args.beam, 1), ("--student-beam", args.student_beam, 1),
                   ("--em-iterations", args.em_iterations, 1), ("--batch-tokens", args.batch_tokens, 1),
                   ("--threads", args.threads, 1))
    if not os.path.isfile(args.teacher):
        raise KDNMTError(f"teacher checkpoint not found: {args.teacher!r}")
    check_data_bin(args.data_bin)
    check_architectures(args.student_arch)
    if args.json is not None and os.path.isdir(args.json):
        raise KDNMTError(f"--json {args.json!r} is a directory; give a file path")


def _signed(x, digits=2):
    return f"{x:+.{digits}f}"


def report_lines(measured, students, model):
    m = measured
    lines = [
        f"teacher {m['teacher']} ({m['teacher_params']:,} parameters); {m['data_bin']} {m['split']}: "
        f"{m['sample_sentences']:,} of {m['split_sentences']:,} sentence pairs measured, "
        f"{m['decoded_sentences']:,} decoded",
        "measurements:",
        f"  teacher per-token entropy      {m['teacher_entropy']:.3f} nats  (teacher forcing on gold, "
        f"{m['target_positions']:,} target tokens)",
        f"  teacher top-1 mass             {m['teacher_top1']:.3f}",
        f"  data complexity C(d)           {m['data_complexity']:.3f} nats  (IBM-1, {m['em_iterations']} EM "
        f"iterations, {m['source_vocabulary']:,} source words)",
        f"  teacher greedy vs gold         BLEU {m['teacher_greedy_bleu']:.2f}, chrF {m['teacher_greedy_chrf']:.2f}",
        f"  teacher beam {m['beam']} vs gold         BLEU {m['teacher_gold_bleu']:.2f}, "
        f"chrF {m['teacher_gold_chrf']:.2f}",
        f"  teacher beam - greedy          {_signed(m['teacher_beam_gain'])} BLEU",
    ]
    for s in students:
        decode = "greedy" if not s["features"]["student_beam_search"] else f"beam {s['student_beam']}"
        lines += [
            "",
            f"student {s['arch']}: {s['params']:,} parameters ({100 * s['features']['param_ratio']:.1f} % of the "
            f"teacher), decoded with {decode}",
            f"  {'method':<10} predicted Δ BLEU vs no KD [{model['interval_percent']} % interval]",
        ]
        for method, p in sorted(s["predictions"].items(), key=lambda kv: -kv[1]["delta"]):
            unranked = "" if p["ranked"] else f"  (fitted on {model['groups'][method]} groups: not ranked)"
            lines.append(f"  {method:<10} {_signed(p['delta'])} [{_signed(p['low'])}, {_signed(p['high'])}]{unranked}")
        best, second = s["recommendation"], s["runner_up"]
        p = s["predictions"][best]
        shown = "" if p["low"] > 0 else "; its interval includes 0: no gain over no KD is shown"
        lines.append(f"  recommendation: {best}{shown}")
        if second is not None:
            margin = p["delta"] - s["predictions"][second]["delta"]
            drivers = ", ".join(f"{name} {_signed(v)}" for name, v in list(s["drivers"].items())[:3])
            lines.append(f"  over {second} by {margin:.2f} BLEU, driven by: {drivers}")
        for name, (x, low, high) in s["outside_range"].items():
            lines.append(f"  note: {name} = {x:.3g} is outside the fitted range [{low:.3g}, {high:.3g}]: "
                         "an extrapolation")
    lines += ["", f"model: {model['path']} ({model['fitted_on']}); how well it predicts: docs/advise.md"]
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_logging()
    validate_args(args)
    from kd_nmt.advise import model as advise_model

    model = advise_model.load_model(args.model)

    import torch

    from kd_nmt.advise.architecture import architecture_parameters
    from kd_nmt.advise.features import measure, setting_features
    from kd_nmt.checkpoint import install_fairseq_patches

    install_fairseq_patches()
    torch.set_num_threads(args.threads)
    started = time.time()
    measured = measure(args.teacher, args.data_bin, args.split, args.sample, args.decode_sentences, args.beam,
                       args.seed, args.em_iterations, args.batch_tokens, args.source_lang, args.target_lang,
                       progress=not args.no_progress)
    students = []
    for arch in args.student_arch:
        params = architecture_parameters(arch, args.data_bin, measured["source_lang"], measured["target_lang"])
        features = setting_features(measured, params, args.student_beam)
        predictions = advise_model.predict(model, features)
        best, second, drivers = advise_model.recommend(predictions)
        students.append({"arch": arch, "params": params, "student_beam": args.student_beam, "features": features,
                         "predictions": predictions, "recommendation": best, "runner_up": second,
                         "drivers": drivers, "outside_range": advise_model.outside_range(model, features)})
    meta = {"path": args.model or os.path.relpath(advise_model.DEFAULT_MODEL),
            "fitted_on": model.get("fitted_on", ""),
            "interval_percent": model.get("interval_percent", 95),
            "groups": {m: fit["groups"] for m, fit in model["methods"].items()}}
    lines = report_lines(measured, students, meta)
    print("\n".join(lines))
    if args.json is not None:
        report = {"command": ["kd-nmt", "advise", *(sys.argv[2:] if argv is None else argv)],
                  "seconds": round(time.time() - started, 2), "measurements": measured, "students": students,
                  "model": meta}
        atomic_write(args.json, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0
