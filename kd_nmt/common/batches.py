"""Token-budget batching of sentences, longest first (decoding: relabel, bench)."""


def make_batches(sizes, max_tokens, max_sentences=0):
    """Indices grouped into batches of at most ``max_tokens`` padded tokens, longest first.

    Length-sorted (ties in input order), so padding is minimal, an out-of-memory shows up at
    once, and the result depends only on ``sizes``. A sentence longer than the budget gets a
    batch of its own; ``max_sentences`` (0 = no limit) caps the sentences per batch. Every
    index appears exactly once.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i))
    batches, current, longest = [], [], 0
    for i in order:
        size = max(int(sizes[i]), 1)
        grown = max(longest, size) * (len(current) + 1)
        full = max_sentences and len(current) >= max_sentences
        if current and (grown > max_tokens or full):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches
