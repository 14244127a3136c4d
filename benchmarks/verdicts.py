"""The rule every benchmark that prints a quality target follows: judge quality only on vectors with real signal.

A quality target ("within 0.005 nDCG@10 of exact") is meaningless on vectors that retrieve at random level: every
index type is then "within" of every other. So a quality verdict is printed only when the exact baseline reaches
:data:`SIGNAL_FLOOR`; otherwise it is ``null`` with the reason, and ``all_targets_met`` cannot be true.
"""

from __future__ import annotations

SIGNAL_FLOOR = 0.3
"""nDCG@10 the exact (uncompressed) search must reach before quality differences are judged."""


def quality_verdicts(baseline_ndcg: float, checks: dict[str, bool]) -> tuple[dict, str | None]:
    """``checks`` (name -> passed) as verdicts when the baseline has signal, else every one ``None``; and the reason
    they were withheld (None when judged)."""
    if baseline_ndcg >= SIGNAL_FLOOR:
        return dict(checks), None
    reason = (f"exact-search nDCG@10 {baseline_ndcg:.4f} is below {SIGNAL_FLOOR}: these vectors retrieve at "
              "random level, so no quality verdict is given")
    return {name: None for name in checks}, reason


def all_met(targets: dict) -> bool | None:
    """True when every target passed, False when one failed, None when a verdict was withheld and none failed."""
    if any(v is False for v in targets.values()):
        return False
    return None if any(v is None for v in targets.values()) else True
