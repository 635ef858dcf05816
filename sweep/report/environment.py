"""Where a study's trials ran, from their run dirs' manifest.json: which of them differ in GPU model,
code or installed packages, so a table that mixes them says so."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from trainer.manifest import Attempt, read_manifest

# What makes trials' numbers not comparable as they stand: each aspect, and its text of one attempt.
ASPECTS: tuple[tuple[str, Callable[[Attempt], str]], ...] = (
    ("GPU models", lambda attempt: attempt.gpu_text),
    ("code", lambda attempt: attempt.code),
    # a manifest written without the package list (pip freeze failed) has no hash: "unknown", no crash
    ("package sets", lambda attempt: f"sha256 {(attempt.packages_sha256 or 'unknown')[:12]}"),
)


@dataclass(frozen=True)
class Spread:
    """One aspect in which the trials differ: each value, with the trials that ran with it."""

    aspect: str  # GPU models | code | package sets
    groups: tuple[tuple[str, tuple[int, ...]], ...]  # (value, trial numbers), the first-run value first

    def to_dict(self) -> dict[str, object]:
        return {"aspect": self.aspect, "groups": [{"value": v, "trials": list(n)} for v, n in self.groups]}


def environment_spread(trials: Iterable[tuple[int, Path]]) -> tuple[Spread, ...]:
    """The aspects in which the (number, run dir) trials' attempts differ; () when they agree.

    Every attempt of a trial counts (a requeued trial may have run on two GPU models); trials without a
    manifest (a program that writes none, a run from before manifests) are left out, not guessed.
    """
    attempts = [(number, attempt) for number, run_dir in trials for attempt in read_manifest(run_dir)]
    spreads = []
    for aspect, text in ASPECTS:
        groups: dict[str, list[int]] = {}
        for number, attempt in sorted(attempts, key=lambda item: item[0]):
            numbers = groups.setdefault(text(attempt), [])
            if number not in numbers:
                numbers.append(number)
        if len(groups) > 1:
            spreads.append(Spread(aspect, tuple((value, tuple(n)) for value, n in groups.items())))
    return tuple(spreads)
