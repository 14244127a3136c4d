"""Supervised fine-tuning of the K-mask readout: data (``data``), objective (``losses``), loop (``trainer``),
budget selection (``budget``)."""
