"""The detector-aware attack's objectives (issue 24, item 5): orthogonal PGD's step is orthogonal to the other
term's gradient, and on a toy defended system orthogonal PGD breaks what the penalty attack cannot."""

from __future__ import annotations

import torch

from advdefense.aware import AwarePGD, DefendedSystem, detector_aware_pgd, orthogonal_direction


def test_orthogonal_direction_descends_one_term_orthogonally_to_the_other():
    torch.manual_seed(0)
    delta = torch.zeros(4, 3, 2, 2, requires_grad=True)
    w_cls, w_det = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
    x = torch.rand(4, 3, 2, 2) + delta
    cls_term = (x * w_cls).flatten(1).sum(1)
    det_term = ((x * w_det).flatten(1).sum(1)) ** 2
    misclassified = torch.tensor([True, False, True, False])
    g = orthogonal_direction(cls_term, det_term, misclassified, delta)
    x = x.detach()
    g_cls = w_cls.expand(4, -1, -1, -1)
    g_det = 2 * (x * w_det).flatten(1).sum(1)[:, None, None, None] * w_det
    for i in range(4):
        own, other = (g_det[i], g_cls[i]) if misclassified[i] else (g_cls[i], g_det[i])
        assert abs(float((g[i] * other).sum())) < 1e-4 * float(own.norm() * other.norm())
        assert float((g[i] * own).sum()) > 0  # still a descent direction of its own term
    # where the other term's gradient is zero, the step is the own term's gradient
    delta = torch.zeros(2, 3, 2, 2, requires_grad=True)
    x = torch.rand(2, 3, 2, 2) + delta
    g = orthogonal_direction(
        (x * w_cls).flatten(1).sum(1), (x * 0).flatten(1).sum(1), torch.tensor([False, False]), delta
    )
    assert torch.allclose(g, w_cls.expand(2, -1, -1, -1))


class Linear2D(torch.nn.Module):
    """A toy classifier on the first two pixels: class 0 where pixel a > pixel b."""

    def forward(self, x):
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 1]
        return torch.stack([10 * (a - b), torch.zeros_like(a)], 1)


def test_orthogonal_pgd_breaks_a_toy_detector_and_the_sanity_holds():
    """Toy defended system: the detector flags images whose pixel b rose above 0.5 + a little; crossing the
    class boundary needs b above a. Images with a = 0.5, b = 0.45 can be misclassified within eps 0.1 while
    staying under the threshold only by moving a down (the detector does not look at a): the attack that knows
    the detector must find that; one that ignores it (lambda 0) walks into the detector too."""
    n = 8
    x = torch.full((n, 1, 2, 2), 0.3)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = 0.5, 0.45
    y = torch.zeros(n, dtype=torch.long)

    def scorer(z):
        return z[:, 0, 0, 1]

    settings = {
        "steps": 40,
        "restarts": 1,
        "lambdas": (0.0,),
        "kappa": 0.05,
        "batch_size": 8,
        "step_rules": ("sign",),
    }
    system = DefendedSystem(Linear2D(), scorer, threshold=0.47, scale=0.01)
    naive = detector_aware_pgd(system, x, y, 0.1, AwarePGD(**settings, objectives=("penalty",)))
    ortho = detector_aware_pgd(system, x, y, 0.1, AwarePGD(**settings, objectives=("orthogonal",)))
    assert naive.broken.mean() < 0.5  # walks b up into the detector
    assert ortho.broken.all() and ortho.broken_by_lambda["orthogonal"] == n
    assert (torch.from_numpy(ortho.adv) - x).abs().max() <= 0.1 + 1e-6


def test_defended_table_applies_the_tramer_reduction():
    """A detector's defended accuracy at eps implies a classifier robust at eps/2 (Tramer 2022): a claim of 80 %
    at 16/255 beats RobustBench's best 75.28 % at 8/255 and is flagged; 50 % is not; at 0.02 no figure bounds
    eps/2 = 0.01. The objective column names orthogonal PGD where its run gave the curve."""
    import pandas as pd

    from advdefense.tables import TRAMER_FLAG, TRAMER_IMPLIED, defended_table

    def row(eps, strongest, sanity=False, loss_lambda=10.0):
        return {
            "method": "pca",
            "epsilon": eps,
            "sanity": sanity,
            "images": 100,
            "clean_accepted_and_correct": 0.9,
            "robust_accuracy_no_detector": 0.0,
            "defended_accuracy_oblivious": 0.9,
            "defended_accuracy_aware": strongest,
            "defended_accuracy_strongest": strongest,
            "attack_success_aware": 1 - strongest,
            "loss_first_step": 2.0,
            "loss_last_step": 1.0,
            "loss_lambda": loss_lambda,
        }

    aware = pd.DataFrame(
        [
            row(16 / 255, 0.8, loss_lambda="orthogonal"),
            row(16 / 255 + 1e-3, 0.5),
            row(0.02, 0.99),
            row(1.0, 0.0, True),
        ]
    )
    table = defended_table(aware)
    assert list(table[TRAMER_IMPLIED]) == [80.0, 50.0, 99.0]
    assert list(table[TRAMER_FLAG]) == ["yes", "no", "no reference at eps/2"]
    assert table["objective, first -> last step (lambda)"].iloc[0] == "2 -> 1 (orthogonal)"


def test_the_views_objective_fools_every_view_alike_and_runs_only_where_there_are_views():
    """views_objective = the sum over the image and each view of the true-class logit minus the target class's
    (the image's best wrong class), each clamped at -VIEWS_CONFIDENCE; a detector without views skips it."""
    from advdefense.aware import VIEWS_CONFIDENCE, views_objective

    torch.manual_seed(1)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 3, 0])

    def views(z):
        return [z.flip(-1), 0.5 * z]

    got = views_objective(classifier, views, x, y)
    logits = classifier(x)
    other = logits.detach().clone()
    other[torch.arange(5), y] = -torch.inf
    t = other.argmax(1)
    want = sum(
        (out[torch.arange(5), y] - out[torch.arange(5), t]).clamp_min(-VIEWS_CONFIDENCE)
        for out in (logits, classifier(x.flip(-1)), classifier(0.5 * x))
    )
    assert torch.allclose(got, want)
    # on the toy system of the test above: with no views the objective adds no run
    n = 4
    x = torch.full((n, 1, 2, 2), 0.3)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = 0.5, 0.45
    attack = AwarePGD(steps=10, restarts=1, lambdas=(0.0,), objectives=("penalty", "views"))
    system = DefendedSystem(Linear2D(), lambda z: z[:, 0, 0, 1], threshold=0.47, scale=0.01)
    res = detector_aware_pgd(system, x, torch.zeros(n, dtype=torch.long), 0.1, attack)
    assert "views" not in res.broken_by_lambda
    res = detector_aware_pgd(system, x, torch.zeros(n, dtype=torch.long), 0.1, attack, views=lambda z: [z])
    assert "views" in res.broken_by_lambda


class FarApart(torch.nn.Module):
    """A toy classifier on two pixels far apart (first row, columns 0 and 7, so that Square's squares can move
    each alone): class 0 where 10 x (a - b) > 0.5; with `rounding`, on a and b rounded to the 0.1 grid, whose
    gradient is zero everywhere (masked) while its decision is not."""

    def __init__(self, rounding: bool):
        super().__init__()
        self.rounding = rounding

    def forward(self, x):
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 7]
        if self.rounding:
            a, b = torch.round(a * 10) / 10, torch.round(b * 10) / 10
        return torch.stack([10 * (a - b), torch.full_like(a, 0.5)], 1)


def test_square_finds_what_masked_gradients_hide_and_respects_the_detector():
    """The gradient-free check (issue 24, item 5) on toy systems: behind a rounding the gradient attacks see a
    zero gradient and break nothing, Square (no gradient) breaks every image within eps and says so in
    `square_only`; a detector that flags everything leaves Square nothing to break; within a ball too small to
    cross the boundary it breaks nothing either."""
    from advdefense.aware import detector_aware_square, run_aware_attacks
    from advdefense.plan.jobs import AwareRun

    n, eps = 6, 0.1
    x = torch.full((n, 1, 8, 8), 0.3)
    # class 0: rounded 0.5 - 0.4; a - 0.1 (-> 0.4) or b + 0.1 (-> 0.5) crosses the boundary, a + b + does not
    x[:, 0, 0, 0], x[:, 0, 0, 7] = 0.53, 0.38
    y = torch.zeros(n, dtype=torch.long)
    attack = AwarePGD(steps=20, restarts=1, lambdas=(0.0, 10.0))
    masked = FarApart(rounding=True)

    def never(z):
        return torch.zeros(len(z))

    system = DefendedSystem(masked, never, threshold=0.5, scale=1.0)
    gradient = detector_aware_pgd(system, x, y, eps, attack)
    assert not gradient.broken.any()  # a zero gradient: sign(0) moves nothing
    broken = detector_aware_square(system, x, y, eps, queries=200, seed=0)
    assert broken.all()
    # a detector that flags everything: nothing is ever accepted, Square breaks nothing
    flags_all = DefendedSystem(masked, lambda z: torch.ones(len(z)), threshold=0.5, scale=1.0)
    assert not detector_aware_square(flags_all, x, y, eps, 200).any()
    # within a ball too small to cross the boundary (10 x (a - b) >= 1.1 at eps 0.02): nothing
    smooth = DefendedSystem(FarApart(rounding=False), never, threshold=0.5, scale=1.0)
    assert not detector_aware_square(smooth, x, y, 0.02, 200).any()

    class NeverFlags:  # the detector interface run_aware_attacks reads
        name = "never"
        thresholds = {0.05: 0.5}
        calibration_scale = 1.0

        def pixel_scorer(self):
            return never

        def views(self):
            return None

    settings = {
        "steps": 20, "restarts": 1, "lambdas": [0.0, 10.0], "step_factor": 2.5, "kappa": 0.1, "batch_size": 6,
        "step_rules": ["sign"], "objectives": ["penalty"], "sanity_epsilon": 1.0, "sanity_images": 2,
        "sanity_steps": 5, "square_queries": 200,
    }  # fmt: skip
    labels = y.numpy()
    rows = run_aware_attacks(
        AwareRun(settings, (eps,), 0, 0.05), masked, NeverFlags(), x.numpy(), labels, {}, "cpu"
    )
    first = rows[0]
    assert first["defended_accuracy_aware"] == 1.0 and first["defended_accuracy_square"] == 0.0
    assert first["square_only"] == n and first["defended_accuracy_strongest"] == 0.0
    settings["square_queries"] = 0
    rows = run_aware_attacks(
        AwareRun(settings, (eps,), 0, 0.05), masked, NeverFlags(), x.numpy(), labels, {}, "cpu"
    )
    assert rows[0]["square_only"] == 0 and rows[0]["defended_accuracy_strongest"] == 1.0
