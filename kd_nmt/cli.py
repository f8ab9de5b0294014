"""``kd-nmt``: one console script, one sub-command per step of a distillation pipeline.

    kd-nmt train ...          fairseq-train with the plugin registered (no --user-dir needed)
    kd-nmt generate ...       fairseq-generate with the plugin registered
    kd-nmt relabel ...        teacher beam search over a corpus (sequence-level KD data)
    kd-nmt filter ...         drop bad pairs from a relabeled corpus (both sides aligned)
    kd-nmt cache-teacher ...  offline teacher top-k distributions
    kd-nmt bench ...          BLEU/chrF, speed and size of checkpoints
    kd-nmt deploy ...         the deployment table: engines, throughput, latency, memory, size
    kd-nmt plot ...           figures from bench results
    kd-nmt advise ...         which KD method to try first, from cheap measurements of the setting

Every sub-command prints ``--help`` with examples. User errors (missing files, mismatched
dictionaries, bad options) print one line ``kd-nmt: error: ...`` and exit with status 2.
"""
import importlib
import os
import sys

from kd_nmt.errors import report_errors

USAGE = __doc__.split("\n\n")[1]

# sub-command -> "module:function"; modules import lazily so `kd-nmt --help` stays fast
COMMANDS = {
    "train": "kd_nmt.cli:fairseq_train",
    "generate": "kd_nmt.cli:fairseq_generate",
    "relabel": "kd_nmt.relabel.cli:main",
    "filter": "kd_nmt.filter.cli:main",
    "cache-teacher": "kd_nmt.cache.cli:main",
    "bench": "kd_nmt.bench.cli:main",
    "deploy": "kd_nmt.bench.cli:deploy_main",
    "plot": "kd_nmt.bench.plot:main",
    "advise": "kd_nmt.advise.cli:main",
}

FAIRSEQ_EXAMPLES = """
kd-nmt {name} forwards every argument to fairseq-{name}, with --user-dir set to the kd_nmt
plugin (so --task kd_translation and --criterion word_kd/hybrid_kd are available).

example:
  kd-nmt train data-bin --arch transformer --task kd_translation \\
      --teacher-path teacher/checkpoint_best.pt --criterion word_kd --kd-alpha 0.5 \\
      --kd-divergence todi --optimizer adam --lr 5e-4 --max-tokens 4096 --save-dir student
  kd-nmt generate data-bin --path student/checkpoint_best.pt --beam 5 --remove-bpe sentencepiece
"""


def _with_user_dir(argv):
    """``argv`` plus ``--user-dir <this package>`` unless given (spawned workers re-import it)."""
    if any(a == "--user-dir" or a.startswith("--user-dir=") for a in argv):
        return list(argv)
    return list(argv) + ["--user-dir", os.path.dirname(os.path.abspath(__file__))]


def _run_fairseq(name, argv):
    if any(a in ("-h", "--help") for a in argv):
        print(FAIRSEQ_EXAMPLES.format(name=name))
    import kd_nmt.registry  # noqa: F401  (registers the plugin in this process)
    from kd_nmt.common.logging_setup import setup_logging

    # importing fairseq (done by kd_nmt itself) configures the root logger before fairseq_cli
    # can; restore fairseq_cli's own format and stream so logs read (and parse) like
    # fairseq-train's
    setup_logging(sys.stdout)
    module = importlib.import_module(f"fairseq_cli.{name}")
    sys.argv = [f"kd-nmt {name}"] + _with_user_dir(argv)
    return module.cli_main()


def fairseq_train(argv):
    return _run_fairseq("train", argv)


def _results_file(path, mode="r", *args, **kwargs):
    """fairseq_cli.generate's ``open`` of ``--results-path``'s ``generate-SUBSET.txt``, through a
    temporary renamed into place (fairseq wrote it line by line in place: a full disk or a kill
    left a half that reads like a finished run)."""
    from kd_nmt.common.atomic import atomic_file

    if "w" not in mode:
        return open(path, mode, *args, **kwargs)
    return atomic_file(path)


def fairseq_generate(argv):
    import fairseq_cli.generate

    fairseq_cli.generate.open = _results_file  # the one file it writes (module-level name lookup)
    return _run_fairseq("generate", argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("\nrun `kd-nmt COMMAND --help` for a command's options and examples.")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"kd-nmt: error: unknown command {name!r}; choose from: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name].split(":")

    def run():
        return getattr(importlib.import_module(module_name), func_name)(rest)

    return report_errors("kd-nmt", run)

if __name__ == "__main__":
    sys.exit(main())
