"""Detector-aware white-box attack (Carlini & Wagner 2017, "Adversarial examples are not easily detected").

The attacker knows the classifier, the Glow (for latent detectors) and the detector with its calibrated
threshold. L-infinity PGD minimises, per image,

    margin(x) + lambda * relu((s(x) - t) / scale + kappa)

where margin = logit of the true class minus the best other logit (negative = misclassified), s the
detector score, t its threshold at the deployed false-positive rate, and scale the spread of the clean
calibration scores. Several lambda (0 = an attacker who ignores the detector) and random restarts, then
orthogonal PGD (Bryniarski et al., ICLR 2022: each step descends one term orthogonally to the other's
gradient, `orthogonal_direction`), which needs no lambda, and for a detector that compares the classifier's
outputs on transformed copies of the image (feature squeezing) the views objective (`views_objective`); an
image counts as broken as soon as one run finds a point that is misclassified *and* not flagged, and
later runs only attack the images still standing. The result is the **defended system's accuracy**: the
share of attacked test images that are classified correctly or rejected.

Gradient-masking checks: the mean objective per step (it must fall), a run at an unbounded eps
(`sanity_epsilon`, must reach ~100 %), and the gradient-free Square on the whole system
(`detector_aware_square`, `square_queries`): it must not break images that every gradient attack left standing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .inference import evaluation_model
from .plan.jobs import AwareRun

log = logging.getLogger(__name__)


@dataclass
class AwareResult:
    adv: np.ndarray  # N x 3 x 32 x 32, the best point per image (the breaking one where one was found)
    broken: np.ndarray  # bool N: misclassified and not flagged
    misclassified: np.ndarray  # bool N at the stored point
    flagged: np.ndarray  # bool N at the stored point
    broken_by_lambda: dict  # lambda -> images first broken by it
    loss_curve: list  # mean objective per step of the first restart of each lambda (images still standing)


def margin(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, label[:, None])[:, 0]
    other = logits.clone()
    other.scatter_(1, label[:, None], -torch.inf)
    return true - other.amax(1)


@dataclass(frozen=True)
class DefendedSystem:
    """What every attack on a detector-defended system knows: the classifier and the detector's pixel score
    (both differentiable, eval mode), its threshold at the deployed false-positive rate and the spread of the
    clean calibration scores (`scale`), which puts the score on the margin's footing."""

    classifier: object  # pixels -> logits
    scorer: object  # pixels -> detector scores
    threshold: float
    scale: float

    def excess(self, score: torch.Tensor) -> torch.Tensor:
        """The calibrated excess score (s(x) - t) / scale: > 0 exactly where the detector flags the image."""
        return (score - self.threshold) / self.scale

    def margin(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The system's margin max(classifier margin, calibrated excess score): <= 0 exactly where the image is
        misclassified and not flagged."""
        return torch.maximum(margin(self.classifier(x), label), self.excess(self.scorer(x)))

    def judge(self, x: torch.Tensor, label: torch.Tensor):
        """(misclassified, flagged) per image."""
        with torch.no_grad():
            pred = self.classifier(x).argmax(1)
            score = self.scorer(x)
        return pred != label, score > self.threshold


@dataclass(frozen=True)
class AwarePGD:
    """The detector-aware PGD's settings (`detection.aware`): `steps` per run, a run per restart and step rule
    for each weight in `lambdas` of the detector's term, steps of `step_factor` x eps / steps on a cosine,
    margin `kappa` on both terms, `batch_size` images at a time."""

    steps: int
    restarts: int
    lambdas: tuple[float, ...]
    step_factor: float = 2.5
    kappa: float = 0.1
    batch_size: int = 100
    step_rules: tuple[str, ...] = ("sign",)
    objectives: tuple[str, ...] = ("penalty",)

    @classmethod
    def from_settings(cls, settings: dict) -> AwarePGD:
        return cls(
            steps=settings["steps"],
            restarts=settings["restarts"],
            lambdas=tuple(settings["lambdas"]),
            step_factor=settings["step_factor"],
            kappa=settings["kappa"],
            batch_size=settings["batch_size"],
            step_rules=tuple(settings["step_rules"]),
            objectives=tuple(settings.get("objectives", ("penalty",))),
        )


def _run_name(label) -> str:
    names = {"orthogonal": "orthogonal PGD", "views": "views objective"}
    if label in names:
        return names[label]
    return f"lambda {label:g}"  # (not names.get: a name is no number to format)


# the views objective's confidence margin (logits): every view at least this far into the target class, so that
# the softmax outputs the detector compares agree (p >= 0.99 at a margin of 5 over each other class)
VIEWS_CONFIDENCE = 5.0


def views_objective(classifier, views, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per image: the sum over the image and its `views(x)` (the transformed copies whose classifier outputs a
    detector compares) of max(logit of the true class - logit of the target class, -VIEWS_CONFIDENCE), the
    target being the image's best wrong class now (He, Wei, Chen, Carlini & Song 2017: fool the classifier on
    every squeezed copy alike, confidently, and feature squeezing sees no disagreement)."""
    logits = classifier(x)
    other = logits.detach().clone()
    other.scatter_(1, label[:, None], -torch.inf)
    target = other.argmax(1)
    total = torch.zeros(len(x), device=x.device)
    for out in [logits] + [classifier(v) for v in views(x)]:
        gap = out.gather(1, label[:, None])[:, 0] - out.gather(1, target[:, None])[:, 0]
        total = total + gap.clamp_min(-VIEWS_CONFIDENCE)
    return total


def orthogonal_direction(
    classifier_term: torch.Tensor,
    detector_term: torch.Tensor,
    misclassified: torch.Tensor,
    delta: torch.Tensor,
) -> torch.Tensor:
    """Orthogonal PGD's direction per image (Bryniarski, Hingun, Pachuca, Wang & Carlini, ICLR 2022): an image
    still classified correctly descends the classifier's term along the part of its gradient orthogonal to the
    detector term's gradient (so it does not become more detectable); a misclassified one descends the detector
    term orthogonally to the classifier term's gradient (so it does not undo the misclassification). Where the
    other gradient is zero (its term is satisfied), the step is the term's own gradient."""
    (g_cls,) = torch.autograd.grad(classifier_term.sum(), delta, retain_graph=True)
    (g_det,) = torch.autograd.grad(detector_term.sum(), delta)
    mask = misclassified.view(-1, *([1] * (g_cls.dim() - 1)))
    along, against = torch.where(mask, g_det, g_cls), torch.where(mask, g_cls, g_det)
    a, b = along.flatten(1), against.flatten(1)
    coef = (a * b).sum(1) / (b * b).sum(1).clamp_min(1e-30)
    return (a - coef[:, None] * b).view_as(along)


def detector_aware_pgd(
    system: DefendedSystem,
    images01: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    attack: AwarePGD,
    seed: int = 0,
    views=None,
) -> AwareResult:
    """Attack `images01` (N x 3 x 32 x 32 in [0, 1]) within the eps L-inf ball; see the module docstring.
    `views`: the detector's transformed copies of an image (`Detector.views`), for the views objective, or None."""
    classifier, scorer, threshold = system.classifier, system.scorer, system.threshold
    steps, restarts, lambdas, kappa = attack.steps, attack.restarts, attack.lambdas, attack.kappa
    step_factor, batch_size, step_rules = attack.step_factor, attack.batch_size, attack.step_rules
    device = images01.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n = len(images01)
    best = images01.clone()
    broken = torch.zeros(n, dtype=torch.bool, device=device)
    # step sizes fall from 2 x (step_factor x eps / steps) to 0 on a cosine: the same total travel as the
    # constant step of Madry et al., coarse first and fine at the end (where the detector's threshold is met)
    steps_t = [
        2 * step_factor * eps / steps * 0.5 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)
    ]
    by_lambda, curve = {}, []
    # the unmodified image first: a misclassified clean image that is not flagged is broken already
    for s in range(0, n, batch_size):
        mis, flag = system.judge(images01[s : s + batch_size], labels[s : s + batch_size])
        broken[s : s + batch_size] = mis & ~flag
    by_lambda["clean"] = int(broken.sum())
    # the penalty objective once per lambda, then orthogonal PGD (no lambda: it alternates the two terms)
    runs = [(lam, lam) for lam in (lambdas if "penalty" in attack.objectives else ())]
    if "orthogonal" in attack.objectives:
        runs.append(("orthogonal", None))
    if "views" in attack.objectives and views is not None:
        runs.append(("views", None))
    for label, lam in runs:
        before = int(broken.sum())
        for restart, rule in ((r, rule) for rule in step_rules for r in range(restarts)):
            todo = torch.nonzero(~broken).flatten()
            if len(todo) == 0:
                break
            step_losses = np.zeros(steps)
            for s in range(0, len(todo), batch_size):
                idx = todo[s : s + batch_size]
                x0, y = images01[idx], labels[idx]
                if restart == 0:
                    delta = torch.zeros_like(x0)
                else:
                    delta = (torch.rand(x0.shape, generator=generator) * 2 - 1).to(device) * eps
                delta = (x0 + delta).clamp(0, 1) - x0
                found = torch.zeros(len(idx), dtype=torch.bool, device=device)
                for t in range(steps):
                    delta.requires_grad_(True)
                    x = x0 + delta
                    logits = classifier(x)
                    score = scorer(x)
                    m = margin(logits, y)
                    detector_term = torch.relu(system.excess(score) + kappa)
                    if lam is not None:
                        loss = m.clamp_min(-kappa) + lam * detector_term
                        (grad,) = torch.autograd.grad(loss.sum(), delta)
                    elif label == "views":
                        loss = views_objective(classifier, views, x, y)
                        (grad,) = torch.autograd.grad(loss.sum(), delta)
                    else:
                        loss = m.clamp_min(-kappa) + detector_term
                        # the margin itself (not clamped): a misclassified image's detector step must keep it
                        grad = orthogonal_direction(m, detector_term, m < 0, delta)
                    with torch.no_grad():
                        # the point just evaluated: keep the first one that breaks each image
                        hit = (m < 0) & (score <= threshold) & ~found
                        if hit.any():
                            best[idx[hit]] = x[hit].detach()
                            found |= hit
                        step_losses[t] += float(loss.detach().sum())
                        if rule == "sign":  # steepest descent under L-inf (Madry et al.)
                            direction = grad.sign()
                        else:  # the gradient scaled to a largest entry of 1: keeps the image's structure
                            direction = (
                                grad / grad.flatten(1).abs().amax(1).clamp_min(1e-12)[:, None, None, None]
                            )
                        delta = (delta - steps_t[t] * direction).clamp(-eps, eps)
                        delta = (x0 + delta).clamp(0, 1) - x0
                x = (x0 + delta).detach()
                mis, flag = system.judge(x, y)
                last = mis & ~flag & ~found
                best[idx[last]] = x[last]
                found |= last
                broken[idx[found]] = True
            if restart == 0:
                curve.append(
                    {"lambda": label, "rule": rule, "loss": (step_losses / max(len(todo), 1)).tolist()}
                )
        by_lambda[label] = int(broken.sum()) - before
        log.info(
            "%s: %d more images broken (%d of %d)", _run_name(label), by_lambda[label], int(broken.sum()), n
        )
    # judge the stored points again, as the evaluation sees them
    mis_all, flag_all = [], []
    for s in range(0, n, batch_size):
        mis, flag = system.judge(best[s : s + batch_size], labels[s : s + batch_size])
        mis_all.append(mis)
        flag_all.append(flag)
    mis, flag = torch.cat(mis_all), torch.cat(flag_all)
    return AwareResult(
        best.cpu().numpy(),
        (mis & ~flag).cpu().numpy(),
        mis.cpu().numpy(),
        flag.cpu().numpy(),
        by_lambda,
        curve,
    )


def detector_aware_square(
    system: DefendedSystem,
    images01: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    queries: int,
    seed: int = 0,
    batch_size: int = 100,
) -> np.ndarray:
    """The gradient-free check on a detector-defended system: Square (Andriushchenko et al. 2020, AutoAttack's
    implementation, `queries` queries per image, L-inf ball of radius eps) on the system's margin
    (`DefendedSystem.margin`), which is <= 0 exactly where the image is misclassified and not flagged. It needs no gradient, so where it breaks images that the gradient attacks left standing, their
    gradients are masked. Returns a bool N: broken (misclassified and not flagged at Square's point)."""
    from pyautoattack.square import SquareAttack

    class SystemSquare(SquareAttack):
        def margin_and_loss(self, x, y):  # the package's hook: (margin, loss) per image, <= 0 = success
            combined = system.margin(x, y)
            return combined, combined

    device = images01.device
    square = SystemSquare(
        system.classifier, norm="Linf", n_queries=queries, eps=eps, p_init=0.8, seed=seed, device=device
    )
    broken = np.zeros(len(images01), bool)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # Square draws from torch's global generator
        torch.manual_seed(seed)
        for s in range(0, len(images01), batch_size):
            x0, y = images01[s : s + batch_size], labels[s : s + batch_size]
            square.init_hyperparam(x0)
            _, adv = square.attack_single_run(x0, y)
            # Square keeps its points in the ball and in [0, 1]; clamped again so that what is judged is in it
            adv = torch.minimum(torch.maximum(adv, x0 - eps), x0 + eps).clamp(0, 1)
            mis, flag = system.judge(adv, y)
            broken[s : s + batch_size] = (mis & ~flag).cpu().numpy()
    return broken


def run_aware_attacks(
    run: AwareRun, classifier, detector, clean01: np.ndarray, labels: np.ndarray, oblivious: dict, device
) -> list[dict]:
    """The detector-aware attack on `detector` (fitted, with `thresholds` at `run.fpr`) at every epsilon of `run`,
    next to the detector-oblivious attacks at that epsilon (the stored attack files). `oblivious`:
    {eps: {key: (pred_adv, label, flagged)}} on the same images. One row per eps, plus the unbounded-eps
    sanity run."""
    settings, eps_list, seed, fpr = run.settings, list(run.epsilons), run.seed, run.fpr
    classifier = evaluation_model(classifier, device)
    for p in classifier.parameters():
        p.requires_grad_(False)
    system = DefendedSystem(
        classifier, detector.pixel_scorer(), detector.thresholds[fpr], detector.calibration_scale
    )
    views = detector.views()
    threshold = system.threshold
    x = torch.from_numpy(np.ascontiguousarray(clean01, dtype=np.float32)).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    clean_mis, clean_flag = system.judge(x, y)
    attack = AwarePGD.from_settings(settings)
    rows = []
    for i, eps in enumerate(list(eps_list) + [settings["sanity_epsilon"]]):
        sanity = i == len(eps_list)
        n = min(settings["sanity_images"], len(x)) if sanity else len(x)  # the images it runs on, as reported
        run = replace(attack, steps=settings["sanity_steps"]) if sanity else attack
        res = detector_aware_pgd(system, x[:n], y[:n], float(eps), run, seed=seed + i, views=views)
        aware_defended = ~res.broken
        row = {
            "method": detector.name,
            "epsilon": float(eps),
            "sanity": sanity,
            "images": n,
            "fpr": fpr,
            "threshold": threshold,
            "clean_accuracy": float((~clean_mis[:n]).float().mean()),
            "clean_accepted_and_correct": float((~clean_mis[:n] & ~clean_flag[:n]).float().mean()),
            "defended_accuracy_aware": float(aware_defended.mean()),
            "attack_success_aware": float(res.broken.mean()),
        }
        # the mean objective per step of the last (largest-lambda) run that still had images to attack
        curve = res.loss_curve[-1] if res.loss_curve else {"lambda": float("nan"), "loss": [float("nan")]}
        row["loss_lambda"] = curve["lambda"]
        row["loss_first_step"], row["loss_last_step"] = curve["loss"][0], curve["loss"][-1]
        for lam, count in res.broken_by_lambda.items():
            row[f"broken_by_lambda_{lam}"] = count
        if not sanity:
            undefended = np.ones(n, bool)
            defended = np.ones(n, bool)
            for key, (pred_adv, label, flagged) in sorted(oblivious.get(float(eps), {}).items()):
                correct = pred_adv[:n] == label[:n]
                undefended &= correct
                defended &= correct | flagged[:n]
                row[f"defended_accuracy_{key}"] = float((correct | flagged[:n]).mean())
            row["robust_accuracy_no_detector"] = (
                float(undefended.mean()) if oblivious.get(float(eps)) else math.nan
            )
            row["defended_accuracy_oblivious"] = (
                float(defended.mean()) if oblivious.get(float(eps)) else math.nan
            )
            queries = settings.get("square_queries", 0)
            if queries:
                square_broken = detector_aware_square(
                    system, x[:n], y[:n], float(eps), queries, seed + i, attack.batch_size
                )
                row["defended_accuracy_square"] = float((~square_broken).mean())
                # images the gradient-free attack broke that every gradient attack left standing
                row["square_only"] = int((square_broken & aware_defended).sum())
                aware_defended = aware_defended & ~square_broken
                log.info(
                    "%s eps %g: defended accuracy %.1f%% under Square (%d queries), %d image(s) broken by it alone",
                    detector.name,
                    eps,
                    100 * row["defended_accuracy_square"],
                    queries,
                    row["square_only"],
                )
            else:
                row["defended_accuracy_square"], row["square_only"] = math.nan, 0
            row["defended_accuracy_strongest"] = float((defended & aware_defended).mean())
        log.info(
            "%s eps %g%s: defended accuracy %.1f%% under the detector-aware attack (%d images)",
            detector.name,
            eps,
            " (sanity, unbounded)" if sanity else "",
            100 * row["defended_accuracy_aware"],
            n,
        )
        rows.append(row)
    return rows
