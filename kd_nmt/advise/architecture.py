"""Parameter counts of candidate student architectures, built on the teacher's dictionaries.

A student's size relative to its teacher is the study's first axis (Wei et al.'s "small
students"); it is counted, not looked up: the architecture (any registered fairseq
architecture, the project's ``transformer_kd_*`` sizes included) is built with fairseq's own
defaults on the data-bin's dictionaries, exactly as ``kd-nmt train --arch ARCH`` would build it,
and its distinct parameters are counted (tied embeddings once).
"""
import os

from kd_nmt.errors import KDNMTError

PLUGIN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def known_architectures():
    import kd_nmt.registry  # noqa: F401  (the transformer_kd_* sizes)
    from fairseq.models import ARCH_MODEL_REGISTRY

    return ARCH_MODEL_REGISTRY


def check_architectures(archs):
    registry = known_architectures()
    unknown = [a for a in archs if a not in registry]
    if unknown:
        ours = ", ".join(sorted(a for a in registry if a.startswith("transformer_kd_")))
        raise KDNMTError(f"unknown --student-arch {', '.join(map(repr, unknown))}; the project's sizes: {ours} "
                         "(or any fairseq architecture)")


def architecture_parameters(arch, data_bin, source_lang, target_lang):
    """Distinct parameters of ``arch`` built on ``data_bin``'s dictionaries."""
    from fairseq import options, tasks

    parser = options.get_training_parser()
    try:
        args = options.parse_args_and_arch(parser, [
            str(data_bin), "--user-dir", PLUGIN, "--arch", arch, "--task", "translation",
            "-s", source_lang, "-t", target_lang])
        model = tasks.setup_task(args).build_model(args)
    except (SystemExit, Exception) as exc:  # noqa: BLE001  (argparse exits; a non-joined dictionary, ...)
        raise KDNMTError(f"cannot build --student-arch {arch!r} on {data_bin!r}: {type(exc).__name__}: {exc}") from None
    return sum(p.numel() for p in model.parameters())
