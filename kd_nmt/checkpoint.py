"""Loading and saving fairseq checkpoints on today's torch.

Two problems, one place:

* torch >= 2.6 loads with ``weights_only=True``. fairseq 0.12 checkpoints hold an
  ``argparse.Namespace``, omegaconf containers and fairseq meter objects, so every
  checkpoint fails to load. Checkpoints *are* pickles: loading one runs code from it.
  kd_nmt therefore loads only the paths a user names on its command line (teacher,
  student, ``--restore-file``), with ``weights_only=False`` and no environment variable.
  Load trusted files only. fairseq's *implicit* restore file — ``checkpoints/checkpoint_last.pt`` (the
  default ``--save-dir``) when neither ``--restore-file`` nor ``--save-dir`` nor the path itself
  is on the command line — is a path the user never named: it is refused with one line saying how to opt
  in (name it with ``--restore-file``, or name the ``--save-dir``), never unpickled. A truncated
  or foreign checkpoint is one line naming the file and what to do.

* fairseq writes ``checkpoint_N.pt`` atomically but *copies* it to ``checkpoint_last.pt`` and
  ``checkpoint_best.pt`` in place: a kill or a full disk mid-copy left a truncated
  ``checkpoint_last.pt`` that the next run died on. The copy here goes through a temporary file,
  fsync and rename. Its own write (``torch.save`` into ``FILE.tmp``) retried every error twice,
  2.5 s apart, logging each traceback, and left the ``.tmp``: a full disk or a read-only
  ``--save-dir`` is one OSError naming the file here (``kd-nmt: error: FILE: No space left on
  device (...)``), no temporary left.

* A student trained with ``--task kd_translation`` must stay a *plain* translation
  checkpoint, so stock ``fairseq-generate`` and ``ct2-fairseq-converter`` (which re-create
  the task named inside the checkpoint) load it without our plugin. When a checkpoint is
  saved, the task name is rewritten to ``translation`` and kd-only options are moved to
  ``extra_state["kd_nmt"]`` (provenance). Resuming is unaffected: fairseq resumes from the
  command-line config, not the one stored in the checkpoint.

``install_fairseq_patches()`` is called when the plugin is imported (``--user-dir kd_nmt``,
``kd-nmt train``); the patches are scoped to ``fairseq.checkpoint_utils``.
"""
import copy
import functools
import os
import sys
import types
from argparse import Namespace

import torch

from kd_nmt.errors import KDNMTError

KD_TASK = "kd_translation"
PLAIN_TASK = "translation"
PLAIN_ARCH = "transformer"
# kd_nmt.architectures' names (kept here so saving needs no fairseq registration import)
PLUGIN_ARCHS = ("transformer_kd_mini", "transformer_kd_tiny", "transformer_kd_small", "transformer_kd_small_d3",
                "transformer_kd_small_d2", "transformer_kd_small_d1", "transformer_kd_base",
                "transformer_kd_narrow", "transformer_kd_micro")
# options that only mean something to kd_translation; stripped from saved student configs
KD_TASK_OPTIONS = ("teacher_path", "teacher_cache", "sentence_kd_data")


def load_checkpoint(path):
    """Load a (trusted) fairseq checkpoint to CPU, upgraded by fairseq (``cfg`` as omegaconf).

    One clear error naming the path if it is missing or unreadable.
    """
    if not path or not os.path.isfile(path):
        raise KDNMTError(f"checkpoint not found: {path!r}")
    install_fairseq_patches()
    from fairseq import checkpoint_utils

    try:
        return checkpoint_utils.load_checkpoint_to_cpu(path)
    except KDNMTError:
        raise
    except Exception as exc:  # truncated file, not a torch file, ...
        raise KDNMTError(
            f"cannot read checkpoint {path!r}: {type(exc).__name__}: {exc}. "
            "Is it a complete fairseq checkpoint?"
        ) from None


def as_plain_translation_state(state):
    """Return ``state`` as a checkpoint stock fairseq can load without the plugin.

    A ``kd_translation`` task config becomes plain ``translation`` (kd-only options move to
    ``extra_state["kd_nmt"]``), and a plugin architecture (``transformer_kd_*``, registered only
    with ``--user-dir kd_nmt``) becomes ``transformer``: the stored model config already holds
    every size the architecture filled in, so the same model is rebuilt. Shallow-copies only what
    it edits, so the trainer's live config is untouched.
    """
    cfg = state.get("cfg")
    if not isinstance(cfg, dict):
        return state
    task = cfg.get("task")
    task_name = task.get("_name") if isinstance(task, dict) else None
    model = cfg.get("model")
    model = model if isinstance(model, Namespace) else None
    is_kd_task = KD_TASK in (task_name, getattr(model, "task", None))
    plugin_arch = getattr(model, "arch", None)
    if plugin_arch not in PLUGIN_ARCHS:
        plugin_arch = None
    if not (is_kd_task or plugin_arch):
        return state

    state = dict(state)
    cfg = dict(cfg)
    state["cfg"] = cfg
    provenance = {}
    if model is not None:
        model = copy.copy(model)
        cfg["model"] = model
    if is_kd_task:
        provenance["task"] = KD_TASK
        if isinstance(task, dict):
            task = dict(task)
            task["_name"] = PLAIN_TASK
            for key in KD_TASK_OPTIONS:
                if key in task:
                    provenance[key] = task.pop(key)
            cfg["task"] = task
        if model is not None:
            model.task = PLAIN_TASK
            for key in KD_TASK_OPTIONS:
                if hasattr(model, key):
                    provenance.setdefault(key, getattr(model, key))
                    delattr(model, key)
    if plugin_arch:
        provenance["arch"] = plugin_arch
        model.arch = model._name = PLAIN_ARCH
    extra = dict(state.get("extra_state") or {})
    extra["kd_nmt"] = {**(extra.get("kd_nmt") or {}), **provenance}
    state["extra_state"] = extra
    return state


class _TorchTrustedLoad(types.ModuleType):
    """``torch`` as seen from fairseq.checkpoint_utils, with ``load(weights_only=False)``."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, *args, **kwargs):
        # fairseq passes an open file (load_checkpoint_to_cpu) or a path
        path = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", None)
        path = path if isinstance(path, str) else None
        if path and implicit_restore_file(path):
            raise KDNMTError(
                f"{path}: fairseq's default --restore-file, a path you did not name, is not loaded "
                "(a checkpoint is a pickle: loading it runs its code). To resume from it, name it: "
                f"--restore-file {path} (or --save-dir {os.path.dirname(path) or '.'}); to start "
                "afresh, move it away or train with another --save-dir"
            )
        kwargs.setdefault("weights_only", False)
        try:
            return torch.load(f, *args, **kwargs)
        except Exception as exc:  # truncated, not a torch file, a foreign pickle
            if path is None:
                raise
            raise KDNMTError(
                f"cannot read checkpoint {path!r} ({type(exc).__name__}: {str(exc)[:120]}): it is truncated "
                "or not a fairseq checkpoint (a training run's checkpoint_last.pt: delete it to start over, "
                "or resume from another with --restore-file)"
            ) from None


def _on_command_line(option):
    return any(a == option or a.startswith(option + "=") for a in sys.argv[1:])


def _named_on_command_line(path):
    """Whether ``path`` is one of the command line's values (``--opt PATH``, ``--opt=PATH``, an
    ensemble ``A.pt:B.pt``)."""
    real = os.path.realpath(path)
    for arg in sys.argv[1:]:
        for part in arg.split("=", 1)[-1].split(":"):
            if part and os.path.realpath(part) == real:
                return True
    return False


def implicit_restore_file(path):
    """Whether ``path`` is fairseq's default restore file, ``checkpoints/checkpoint_last.pt``
    under the working directory, which the command line did not name (no ``--restore-file``, no
    ``--save-dir``, not the path itself). Any other path is one a user named."""
    if os.path.realpath(path) != os.path.realpath(os.path.join("checkpoints", "checkpoint_last.pt")):
        return False
    return not (_on_command_line("--restore-file") or _on_command_line("--save-dir")
                or _named_on_command_line(path))


class _AtomicCopyPathManager:
    """fairseq's PathManager as checkpoint_utils sees it, with an atomic ``copy``
    (``kd_nmt.common.atomic.atomic_copy``): DST is the old file or the new one, never half."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def copy(self, src_path, dst_path, overwrite=False, **kwargs):
        if os.path.exists(dst_path) and not overwrite:
            return False
        from kd_nmt.common.atomic import atomic_copy

        atomic_copy(src_path, dst_path)
        return True


def install_fairseq_patches():
    """Idempotently patch fairseq.checkpoint_utils (trusted load of named files only, atomic copy
    of checkpoint_last/best, plain-translation save)."""
    from fairseq import checkpoint_utils

    if getattr(checkpoint_utils, "_kd_nmt_patched", False):
        return
    checkpoint_utils.torch = _TorchTrustedLoad()
    checkpoint_utils.PathManager = _AtomicCopyPathManager(checkpoint_utils.PathManager)
    original_save = checkpoint_utils.torch_persistent_save

    @functools.wraps(original_save)
    def save_plain(obj, filename, async_write=False, *args, **kwargs):
        if isinstance(obj, dict):
            obj = as_plain_translation_state(obj)
        if async_write or not checkpoint_utils.PathManager.supports_rename(filename):
            return original_save(obj, filename, async_write, *args, **kwargs)
        # fairseq's own retries torch.save into FILE.tmp twice, 2.5 s apart, and logs each
        # traceback: a full disk or a read-only folder (no retry mends them) was three tracebacks,
        # 5 s and a stray FILE.tmp. Here: one OSError naming FILE, no temporary left.
        from kd_nmt.common.atomic import atomic_torch_save

        atomic_torch_save(obj, filename)

    checkpoint_utils.torch_persistent_save = save_plain
    checkpoint_utils._kd_nmt_patched = True


CRITERION_STATE = "kd_nmt_criterion"  # extra_state key of a criterion's training state


def install_criterion_state_patch():
    """Idempotently make fairseq's Trainer save and restore a criterion's ``training_state()``.

    fairseq saves ``criterion.state_dict()`` only for a criterion with parameters (and loads it
    strictly), so a criterion whose state is not a parameter (``--kd-select global``'s queue of
    recent token CE values) would restart empty on resume. A criterion that offers
    ``training_state()`` / ``load_training_state(state)`` gets it saved in the checkpoint's
    ``extra_state["kd_nmt_criterion"]`` and restored from it; ``load_checkpoint`` returns the
    extra state on every rank (fairseq loads on rank 0 and broadcasts it).
    """
    from fairseq.trainer import Trainer

    if getattr(Trainer, "_kd_nmt_criterion_state_patched", False):
        return
    original_state_dict = Trainer.state_dict
    original_load_checkpoint = Trainer.load_checkpoint

    @functools.wraps(original_state_dict)
    def state_dict(self):
        state = original_state_dict(self)
        training_state = getattr(self.get_criterion(), "training_state", None)
        extra = training_state() if training_state is not None else None
        if extra:
            state["extra_state"][CRITERION_STATE] = extra
        return state

    @functools.wraps(original_load_checkpoint)
    def load_checkpoint(self, *args, **kwargs):
        extra_state = original_load_checkpoint(self, *args, **kwargs)
        load = getattr(self.get_criterion(), "load_training_state", None)
        if extra_state and CRITERION_STATE in extra_state and load is not None:
            load(extra_state[CRITERION_STATE])
        return extra_state

    Trainer.state_dict = state_dict
    Trainer.load_checkpoint = load_checkpoint
    Trainer._kd_nmt_criterion_state_patched = True


def load_models(paths, task=None, arg_overrides=None):
    """Load one or more fairseq models (an ensemble) for inference: eval mode, CPU.

    ``paths`` is a list or a ``a.pt:b.pt`` string. Returns ``(models, model_cfg_list)``.
    With ``task`` given, models are built against its dictionaries.
    """
    install_fairseq_patches()
    from fairseq import checkpoint_utils

    if isinstance(paths, str):
        paths = [p for p in paths.split(":") if p]
    models, cfgs = [], []
    for path in paths:
        state = load_checkpoint(path)
        try:
            ensemble, cfg = checkpoint_utils.load_model_ensemble(
                [path], arg_overrides=arg_overrides, task=task, state=state
            )
        except KDNMTError:
            raise
        except Exception as exc:
            raise KDNMTError(
                f"cannot build the model stored in {path!r}: {type(exc).__name__}: {exc}"
            ) from None
        for model in ensemble:
            model.eval()
        models.extend(ensemble)
        cfgs.append(cfg)
    return models, cfgs


def checkpoint_vocab_sizes(state):
    """(source, target) embedding-table sizes of a transformer checkpoint state, None if unknown."""
    weights = state.get("model", {})

    def rows(*keys):
        for key in keys:
            if key in weights:
                return int(weights[key].shape[0])
        return None

    return (
        rows("encoder.embed_tokens.weight"),
        rows("decoder.output_projection.weight", "decoder.embed_tokens.weight"),
    )
