"""What every ``kd-nmt`` command shares, one idea per module (as mozilla/translations'
``pipeline/common/``): the commands import these instead of writing them again.

* ``args``: the argument parser whose usage errors are one ``KDNMTError`` line;
* ``logging_setup``: fairseq's log format, quiet fairseq, the ``kd-nmt CMD: ...`` status line;
* ``lines``: text files read line by line exactly as ``fairseq-preprocess`` reads them;
* ``dictionaries``: comparing fairseq dictionaries (first differing symbol), finding the ones a
  checkpoint was trained with;
* ``data_bin``: a data-bin's binarized files, splits and language pair;
* ``task_setup``: a plain fairseq ``translation`` task on a data-bin, a split loaded;
* ``batches``: token-budget, length-sorted batching of sentences;
* ``detokenize``: subword pieces back to text (``fairseq-generate --remove-bpe``);
* ``hashing``: sha256 of files.

Nothing here changes process-wide state on import; only the entry points call ``logging_setup``.
"""
