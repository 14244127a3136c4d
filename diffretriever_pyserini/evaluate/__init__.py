"""Evaluation: trec_eval metrics of run files (``metrics``), the K-sweep report (``report``), the paper's published
numbers and their reproduction configs (``paper``)."""
