"""A whole collection end to end: prepare -> encode -> index -> search -> fuse -> evaluate.

``settings`` (the options as given, and the run resolved once), ``stages`` (the per-stage settings a run reads),
``steps`` (the steps, each skipped when its outputs are complete), ``records`` (metrics and ``config.json``),
``controls`` (BM25, mean pooling, baselines with fusion), ``demo`` (the SciFact demo table). Outputs land at
``runs/<collection>/<condition>/<mode>.trec`` with ``.metrics.json`` beside each; work files (prepared data,
encodings, indexes) under ``<work>/``.
"""

from diffretriever_pyserini.pipeline.controls import (BM25_MULTIFIELD_BOOSTS, baselines, bm25_index, run_bm25,
                                                      run_bm25_multifield, run_meanpool_control)
from diffretriever_pyserini.pipeline.records import (SPARSE_UNMATCHED_RULE, deliberate_differences, metrics_table,
                                                     run_config)
from diffretriever_pyserini.pipeline.settings import (Run, RunConfig, RunPaths, SettingError, as_run, resolve,
                                                      stage_fields)
from diffretriever_pyserini.pipeline.steps import (READOUT_VERSION, DocumentEncoderFactory, encoding_request,
                                                   run_dataset, step_encode, step_index, step_prepare, step_search)
from diffretriever_pyserini.search.modes import MODES


def Paths(cfg) -> RunPaths:  # noqa: N802 - the old class's name, kept for callers of the previous release
    """Where the steps of one condition read and write (``cfg.resolve().paths``)."""
    return as_run(cfg).paths


__all__ = ["BM25_MULTIFIELD_BOOSTS", "MODES", "READOUT_VERSION", "SPARSE_UNMATCHED_RULE", "DocumentEncoderFactory",
           "Paths", "Run", "RunConfig", "RunPaths", "SettingError", "as_run", "baselines", "bm25_index",
           "deliberate_differences", "encoding_request", "metrics_table", "resolve", "run_bm25",
           "run_bm25_multifield", "run_config", "run_dataset", "run_meanpool_control", "stage_fields", "step_encode",
           "step_index", "step_prepare", "step_search"]
