"""Collections: the BEIR datasets of the registry (``registry``), where their files come from (``sources``: mirror or
checked download), reading collection files with file:line errors (``files``), converting them once into what
Pyserini reads (``prepare``), and slices of a collection for quick runs (``slices``).

A prepared dataset is a folder holding ``corpus/part-NNNNN.jsonl`` (``id``, ``title``, ``text``, ``contents`` =
title + ". " + text), ``topics.tsv`` (qid TAB text, the judged queries of the split) and ``qrels.txt`` (TREC:
qid 0 docid rel). The names below are the package's public ones; import them from here.
"""

from diffretriever_pyserini.datasets.files import (
                                                   DOC_SEPARATOR,
                                                   check_id,
                                                   document_text,
                                                   iter_corpus,
                                                   one_line,
                                                   read_beir_qrels,
                                                   read_jsonl,
                                                   read_queries,
                                                   read_topics,
                                                   record_id,
)
from diffretriever_pyserini.datasets.prepare import (
                                                   CORPUS_SHARD_SIZE,
                                                   PREPARE_FORMAT,
                                                   PreparedDataset,
                                                   iter_prepared_corpus,
                                                   prepare,
)
from diffretriever_pyserini.datasets.registry import (
                                                   BEIR_URL,
                                                   CQADUPSTACK_FORUMS,
                                                   DATASETS,
                                                   BeirDataset,
                                                   DatasetError,
                                                   get_dataset,
)
from diffretriever_pyserini.datasets.sources import (
                                                   content_sha256,
                                                   download_archive,
                                                   fingerprint,
                                                   source_dir,
                                                   source_files,
                                                   verify_sources,
)

__all__ = ["BEIR_URL", "CORPUS_SHARD_SIZE", "CQADUPSTACK_FORUMS", "DATASETS", "DOC_SEPARATOR", "PREPARE_FORMAT",
           "BeirDataset", "DatasetError", "PreparedDataset", "check_id", "content_sha256", "document_text",
           "download_archive", "fingerprint", "get_dataset", "iter_corpus", "iter_prepared_corpus", "one_line",
           "prepare", "read_beir_qrels", "read_jsonl", "read_queries", "read_topics", "record_id", "source_dir",
           "source_files", "verify_sources"]
