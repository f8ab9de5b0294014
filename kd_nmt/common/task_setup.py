"""A plain fairseq ``translation`` task on a data-bin, for the tools that decode or score.

The task supplies the dictionaries (``dict.SRC.txt`` / ``dict.TGT.txt``), builds models from
checkpoints against them and loads binarized splits as ``LanguagePairDataset``s, with the
translation task's defaults (left-padded sources, 1024 max positions). No training config is
parsed: the dataclass is filled directly, its ``${dataset.*}`` interpolations set explicitly.
"""
from kd_nmt.errors import KDNMTError


def translation_task(data_bin, source_lang, target_lang):
    """``TranslationTask`` on ``data_bin`` for ``source_lang`` → ``target_lang``."""
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    cfg = TranslationConfig(
        data=str(data_bin), source_lang=source_lang, target_lang=target_lang,
        dataset_impl=None, train_subset="train", required_seq_len_multiple=1,
    )
    try:
        return TranslationTask.setup_task(cfg)
    except Exception as exc:  # noqa: BLE001  (an unreadable dictionary, ...)
        raise KDNMTError(
            f"cannot set up a translation task on {data_bin!r}: {type(exc).__name__}: {exc}"
        ) from None


def load_split(task, split, combine=False):
    """``split`` of ``task``'s data loaded (``combine``: with ``split1``, ...), its dataset."""
    try:
        task.load_dataset(split, combine=combine)
    except KDNMTError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise KDNMTError(
            f"cannot load split {split!r} from {task.cfg.data!r}: {type(exc).__name__}: {exc}"
        ) from None
    return task.dataset(split)
