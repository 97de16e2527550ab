"""AutoAttack (Croce & Hein, ICML 2020) as an attack kind: the authors' code, packaged as `pyautoattack`.

`attacks.<name>.class: AutoAttack` runs the package's sub-attacks (APGD-CE, APGD-T, FAB-T, Square for
`version: standard`; APGD-CE and APGD-DLR with EOT for `rand`; any list of them for `custom`) exactly as its
`run_standard_evaluation` does: each sub-attack on the images of the batch that are still classified correctly,
the first success kept (the worst case over the sub-attacks). Two things differ, both needed by the pipeline:
the loop runs batch by batch, so a batch's result does not depend on the other batches (sharded attack jobs
merge into the unsharded file bit for bit), and it records which sub-attack fooled the classifier per image.
With one batch holding every image it is the package's own evaluation, adversarial for adversarial (a test
compares them). The package's own sanity checks run on the first batch, its warnings are kept for the attack
file and `summary.csv`.
"""

from __future__ import annotations

import logging
import warnings

import torch

from .plan.attack_specs import AUTOATTACK_NORMS


class _WarningLog(logging.Handler):
    """Collects the package's warnings (it logs them on the 'auto-attack' logger)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg not in self.messages:
            self.messages.append(msg)


class AutoAttackRunner:
    """Callable `(x, y, seed) -> (adversarials, sub-attack per image)` for one model, norm and epsilon.

    The sub-attack per image is its position in `self.sub_attacks` of the sub-attack that fooled the model,
    -1 where none did (robust, or misclassified already when clean: then the image is returned unchanged)."""

    runs = None  # one run per batch (attack_methods.AttackMethod)
    draws_at_random = True  # APGD's and Square's random starts

    def __init__(self, model: torch.nn.Module, norm: str, eps: float, params: dict, device, recorder=None):
        """`recorder`: an `inference.LogitRecorder` around `model`; the clean pass of each batch goes through it,
        so the attack stage reads the stored clean predictions from it instead of running that pass again.
        The sub-attacks' hundreds of passes run the bare `model`."""
        from pyautoattack import AutoAttack

        version = params.get("version", "standard")
        self.adversary = AutoAttack(
            model,
            norm=AUTOATTACK_NORMS[norm],
            eps=float(eps),
            device=device,
            seed=0,
            version=version,
            attacks=params.get("attacks") if version == "custom" else None,
        )
        self.adversary.verbose = False
        self.sub_attacks: list[str] = list(self.adversary.attacks_to_run)
        self.model = model
        self.clean_pass = recorder if recorder is not None else model
        self.warnings = _WarningLog()
        self.adversary.logger.addHandler(self.warnings)
        self._checked = False
        self.robust: dict[
            str, int
        ] = {}  # images still classified correctly after each sub-attack, all batches
        self.images = 0

    def close(self):
        self.adversary.logger.removeHandler(self.warnings)

    def _sanity_checks(self, x, y):
        """The package's checks on a batch: randomness of the model, probabilities instead of logits, dynamic
        code paths, too few classes for the targeted sub-attacks."""
        from pyautoattack import checks

        aa = self.adversary
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if aa.version != "rand":
                checks.check_randomized(aa.get_logits, x, y, bs=len(x), logger=aa.logger)
            n_cls = checks.check_range_output(aa.get_logits, x, logger=aa.logger)
            checks.check_dynamic(self.model, x, False, logger=aa.logger)
            checks.check_n_classes(
                n_cls,
                self.sub_attacks,
                aa.apgd_targeted.n_target_classes,
                aa.fab.n_target_classes,
                logger=aa.logger,
            )
        for w in caught:
            if str(w.message) not in self.warnings.messages:
                self.warnings.messages.append(str(w.message))

    def _run(self, name: str, x, y, seed: int):
        aa = self.adversary
        if name in ("apgd-ce", "apgd-dlr"):
            aa.apgd.loss = "ce" if name == "apgd-ce" else "dlr"
            aa.apgd.seed = seed
            return aa.apgd.perturb(x, y)
        if name in ("fab", "fab-t"):
            aa.fab.targeted = name == "fab-t"
            if name == "fab-t":
                aa.fab.n_restarts = 1
            aa.fab.seed = seed
            return aa.fab.perturb(x, y)
        if name == "square":
            aa.square.seed = seed
            return aa.square.perturb(x, y)
        aa.apgd_targeted.seed = seed
        return aa.apgd_targeted.perturb(x, y)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, seed: int):
        if not self._checked:
            self._sanity_checks(x, y)
            self._checked = True
        with torch.no_grad():
            robust = self.clean_pass(x).argmax(1) == y
        adv = x.clone()
        sub = torch.full((len(x),), -1, dtype=torch.int8, device=x.device)
        self.images += len(x)
        self.robust["clean"] = self.robust.get("clean", 0) + int(robust.sum())
        with torch.no_grad():  # as in the package: the sub-attacks enable gradients where they need them
            for k, name in enumerate(self.sub_attacks):
                idx = torch.nonzero(robust).flatten()
                if len(idx):
                    out = self._run(name, x[idx].clone(), y[idx].clone(), seed)
                    fooled = self.model(out).argmax(1) != y[idx]
                    hit = idx[fooled]
                    adv[hit] = out[fooled].detach()
                    sub[hit] = k
                    robust[hit] = False
                self.robust[name] = self.robust.get(name, 0) + int(robust.sum())
        return adv, sub

    def finish(self) -> list[str]:
        """The package's warnings, including its check that Square (black-box) did not beat the white-box
        sub-attacks (a sign of masked gradients), over all batches."""
        from pyautoattack import checks

        if self.images:
            checks.check_square_sr(
                {k: v / self.images for k, v in self.robust.items()}, logger=self.adversary.logger
            )
        self.close()
        return list(self.warnings.messages)
