"""The 2CR verdict of a measured number against its expected value, as Pyserini's reproduction pages and Anserini's
regression runner give it: OK (equal at the shown precision), OKish (within a tolerance), FAIL."""

from __future__ import annotations

ANSERINI_PRECISION = 4
ANSERINI_OKISH = 0.0005
"""Anserini's configs: four decimals; within 0.0005 is OKish."""


def verdict(measured: float, expected: float, precision: int = ANSERINI_PRECISION,
            okish: float = ANSERINI_OKISH) -> str:
    """OK when ``measured`` rounds to ``expected`` at ``precision`` decimals, OKish within ``okish``, else FAIL."""
    if round(measured, precision) == round(expected, precision):
        return "OK"
    return "OKish" if abs(measured - expected) <= okish + 1e-12 else "FAIL"
