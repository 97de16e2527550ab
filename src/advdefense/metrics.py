"""Detection metrics on scores where larger means "more likely attacked" (label 1)."""

from __future__ import annotations

import numpy as np


def _check(scores_clean, scores_adv):
    neg = np.asarray(scores_clean, dtype=np.float64).ravel()
    pos = np.asarray(scores_adv, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError(f"need scores of both classes (clean: {neg.size}, attacked: {pos.size})")
    if not (np.isfinite(neg).all() and np.isfinite(pos).all()):
        raise ValueError("scores must be finite")
    return neg, pos


def auroc(scores_clean, scores_adv) -> float:
    """Area under the ROC curve = P(score_adv > score_clean) + 0.5 P(tie) (Mann-Whitney U)."""
    neg, pos = _check(scores_clean, scores_adv)
    all_scores = np.concatenate([neg, pos])
    order = np.argsort(all_scores, kind="mergesort")
    ranks = np.empty(len(all_scores), dtype=np.float64)
    sorted_scores = all_scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    rank_sum_pos = ranks[len(neg) :].sum()
    u = rank_sum_pos - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def roc_curve(scores_clean, scores_adv) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) over all thresholds (every distinct score, largest first:
    flagged = score >= threshold), from (0, 0) to (1, 1). O(N log N): the counts at or above each
    threshold come from sorted scores (one threshold at a time was O(N^2): 14 000 scores of a pooled
    full-size detector made 2 x 10^8 comparisons per curve)."""
    neg, pos = _check(scores_clean, scores_adv)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.concatenate([[0.0], _share_at_or_above(neg, thresholds)])
    tpr = np.concatenate([[0.0], _share_at_or_above(pos, thresholds)])
    return fpr, tpr


def _share_at_or_above(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the share of `scores` that are >= it."""
    below = np.searchsorted(np.sort(scores), thresholds, side="left")
    return (len(scores) - below) / len(scores)
