"""Seeds derived from a run's seed, torch-free: each job (an attack file, a corruption) draws from its own stream,
so the same images get the same draws on every rerun and whatever else the run holds."""

from __future__ import annotations

import zlib


def keyed_seed(seed: int, key: str) -> int:
    """The seed of the job named `key` (e.g. "pgd/0.02/test") in a run of seed `seed`."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)
