"""Synthetic examples the benchmarks share: deterministic text of a drawn length and small noisy images.

Each benchmark keeps its own seed and fields (its recorded results were made with them); what is
shared is how a text of a target length and an image are drawn, so the data stays the same.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

#: the vocabulary of bench_reference and bench_read_paths
WORDS = ("atlas dataset block shard index offset tensor image caption token batch example the of and to in "
         "for on with as by compress dictionary checksum random access sequential reader writer").split()


def text_of_length(rng: random.Random, target: int, words: tuple[str, ...] | list[str] = WORDS) -> str:
    """Words drawn from ``words`` until ``target`` characters, cut to exactly ``target``."""
    drawn: list[str] = []
    length = 0
    while length < target:
        word = rng.choice(words)
        drawn.append(word)
        length += len(word) + 1
    return " ".join(drawn)[:target]


def noisy_image(rng: np.random.Generator, base_max: int = 256) -> Any:
    """A 3x32x32 uint8 image: a random colour per channel plus noise below 32 (compresses like photos)."""
    base = rng.integers(0, base_max, size=(3, 1, 1), dtype=np.uint8)
    noise = rng.integers(0, 32, size=(3, 32, 32), dtype=np.uint8)
    return (base + noise).astype(np.uint8)
