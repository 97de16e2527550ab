"""Detection metrics on scores where larger means "more likely attacked" (label 1)."""
from __future__ import annotations

import math

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
    rank_sum_pos = ranks[len(neg):].sum()
    u = rank_sum_pos - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def roc_curve(scores_clean, scores_adv) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) over all thresholds, from (0, 0) to (1, 1)."""
    neg, pos = _check(scores_clean, scores_adv)
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.array([0.0] + [(neg >= t).mean() for t in thresholds])
    tpr = np.array([0.0] + [(pos >= t).mean() for t in thresholds])
    return fpr, tpr


def tpr_at_fpr(scores_clean, scores_adv, fpr: float = 0.05) -> float:
    """True-positive rate at the threshold that flags at most `fpr` of the clean images."""
    neg, pos = _check(scores_clean, scores_adv)
    k = int(math.floor(fpr * neg.size + 1e-9))  # clean images that may be flagged
    threshold = np.sort(neg)[::-1][min(k, neg.size - 1)]  # flag score > threshold: at most k clean (ties: fewer)
    return float((pos > threshold).mean())


def best_threshold(scores_clean, scores_adv) -> float:
    """Threshold (flag if score > t) maximising balanced accuracy; chosen on training data."""
    neg, pos = _check(scores_clean, scores_adv)
    candidates = np.unique(np.concatenate([neg, pos]))
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    tnr = np.searchsorted(neg_sorted, candidates, side="right") / len(neg)
    tpr = 1.0 - np.searchsorted(pos_sorted, candidates, side="right") / len(pos)
    best = int(np.argmax(tnr + tpr))
    # also consider flagging everything (t below the minimum)
    if 1.0 > tnr[best] + tpr[best]:
        return float(candidates[0] - 1.0)
    return float(candidates[best])


def detection_metrics(scores_clean, scores_adv, threshold: float, success=None) -> dict:
    """The paper's accuracy on the balanced set (balanced accuracy) plus AUROC, TPR at 5 % FPR, clean FPR, and the
    detection rate on successful and failed adversarials separately."""
    neg, pos = _check(scores_clean, scores_adv)
    flag_neg, flag_pos = neg > threshold, pos > threshold
    out = {
        "n_clean": int(neg.size),
        "n_attacked": int(pos.size),
        # balanced accuracy: equals plain accuracy on the paper's balanced sets, and stays meaningful
        # when one clean set is compared with several attacks pooled
        "accuracy": float(0.5 * ((~flag_neg).mean() + flag_pos.mean())),
        "auroc": auroc(neg, pos),
        "tpr_at_5fpr": tpr_at_fpr(neg, pos, 0.05),
        "fpr_clean": float(flag_neg.mean()),
        "tpr": float(flag_pos.mean()),
    }
    if success is not None:
        success = np.asarray(success, dtype=bool).ravel()
        out["tpr_successful"] = float(flag_pos[success].mean()) if success.any() else float("nan")
        out["tpr_failed"] = float(flag_pos[~success].mean()) if (~success).any() else float("nan")
        out["n_successful"] = int(success.sum())
    return out
