"""Bounds on the readout settings, checked wherever a setting comes in (options, ``retriever_config.json``)."""

MAX_K = 128
"""The most mask positions a readout takes (the paper sweeps K up to 16): a bad setting fails at once rather than
as an out-of-range position or hours of work."""
MAX_DENOISE_STEPS = MAX_K
"""Each denoising pass unmasks at least one of the K positions, so more than K passes change nothing."""
MAX_TAIL = 16
"""The most tokens after the K masks (the reference uses 3)."""
