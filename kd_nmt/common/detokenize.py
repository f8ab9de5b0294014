"""Subword pieces back to text, as ``fairseq-generate --post-process/--remove-bpe`` does it.

Plain string operations (no fairseq import), equal to ``fairseq.data.data_utils.post_process``
for these three schemes, then stripped.
"""
REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")


def detokenize(pieces, remove_bpe="sentencepiece"):
    """Token string → text.

    ``sentencepiece``: drop the spaces between pieces, then ``▁`` → space; ``subword_nmt``:
    join ``@@ `` continuations; ``none``: the pieces as they are.
    """
    if remove_bpe == "sentencepiece":
        return pieces.replace(" ", "").replace("\u2581", " ").strip()
    if remove_bpe == "subword_nmt":
        return (pieces + " ").replace("@@ ", "").strip()
    return pieces.strip()
