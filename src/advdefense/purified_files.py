"""Purified files: a purifier's output for one attack file (or a clean split), read without torch.

Layout (`results/purified/<run>/<purifier>/<attack>/eps<eps>/<split>.h5`, written by `purification.py`): the purified
images, the labels and the classifier's predictions on them; the tables and figures need only the latter.
"""

from __future__ import annotations

from .h5io import read_h5

PURIFIED_FORMAT = "advdefense-purified-v2"  # v2: attrs name the purifier (issue 24)


def read_purified(path) -> dict:
    """A purified file without its images (the tables need labels and predictions only)."""
    return read_h5(path, PURIFIED_FORMAT, "purified", skip=("purified",))
