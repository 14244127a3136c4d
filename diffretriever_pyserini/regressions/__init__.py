"""Anserini-style regression configs: writing them from runs and checking them (``anserini``)."""
