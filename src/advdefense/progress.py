"""Progress a person can follow: a long job logs how far it is, its rate and the time left at that
rate, at a steady pace (every `every` seconds, plus the first and the last update), not once per batch."""

from __future__ import annotations

import logging
import time


def format_seconds(seconds: float) -> str:
    """'45 s', '12 min', '3 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min"


class ProgressLog:
    """`update(done)` after each unit of work (images, epochs ...) out of `total`."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str = "images",
        every: float = 30.0,
        clock=time.perf_counter,
    ):
        self.logger, self.what, self.total, self.unit, self.every, self.clock = (
            logger,
            what,
            total,
            unit,
            every,
            clock,
        )
        self.start = clock()
        self.last_logged: float | None = None
        self.lines = 0

    def update(self, done: int, start_done: int = 0) -> None:
        """Log the state after `done` of `total` units; `start_done` units were already done when this
        run began (a resumed training), so they do not count towards the rate."""
        now = self.clock()
        if not (self.last_logged is None or done >= self.total or now - self.last_logged >= self.every):
            return
        elapsed = now - self.start
        rate = (done - start_done) / elapsed if elapsed > 0 else float("nan")
        left = (self.total - done) / rate if rate and rate > 0 else float("nan")
        eta = "done" if done >= self.total else (f"about {format_seconds(left)} left" if left == left else "")
        self.logger.info(
            "%s: %d/%d %s (%.0f%%), %.3g %s/s, %s",
            self.what,
            done,
            self.total,
            self.unit,
            100.0 * done / max(self.total, 1),
            rate,
            self.unit,
            eta,
        )
        self.last_logged = now
        self.lines += 1
