"""``python -m diffretriever_pyserini.search.maxsim``: MaxSim search of a K-vector index from the command line, with
the flags of Pyserini's search commands (``--index --topics --encoder --output --hits --batch-size --threads
--remove-query``), writing the run our ``search`` writes for ``multi_dense``.

``--index`` is an encoding's dense folder (``kvectors.npy`` + ``docid``, as ``encode`` writes it); the encoder is the
one the index was encoded with (recorded in the folder) unless ``--encoder`` names another. ``--topics`` is a topics
file (TSV, JSON or JSONL) or a topics name Pyserini has on this machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffretriever_pyserini.search.maxsim import METHODS, MaxSimOptions, get_method

DEFAULT_TAG = "diffretriever.multi_dense"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffretriever_pyserini.search.maxsim",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--index", required=True, help="dense encoding folder (kvectors.npy, docid)")
    p.add_argument("--topics", required=True, help="topics file (TSV, JSON, JSONL) or a Pyserini topics name")
    p.add_argument("--output", required=True, help="TREC run to write (.gz for gzip)")
    p.add_argument("--encoder", default=None, help="model (packaged name, folder or hub id; default: the index's)")
    p.add_argument("--adapter", default=None, help="LoRA adapter (default: the index's)")
    p.add_argument("--hits", type=int, default=1000, help="hits per topic")
    p.add_argument("--batch-size", type=int, default=32, help="queries per forward pass")
    p.add_argument("--threads", type=int, default=2, help="search threads (compressed method)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda:N")
    p.add_argument("--remove-query", action="store_true", help="drop a hit whose docid equals the query id")
    p.add_argument("--run-tag", default=DEFAULT_TAG, help="the run's tag")
    p.add_argument("--method", choices=tuple(METHODS), default="exact", help="MaxSim search method")
    p.add_argument("--depth", type=int, default=MaxSimOptions.depth, help="candidate rows per query vector "
                                                                          "(candidates)")
    p.add_argument("--nprobe", type=int, default=None, help="anchor lists probed (compressed; default: the store's)")
    p.add_argument("--ndocs", type=int, default=MaxSimOptions.ndocs, help="passages scored over decoded vectors "
                                                                          "(compressed)")
    p.add_argument("--rerank", type=int, default=0, help="top hits re-scored exactly (compressed)")
    p.add_argument("--k", type=int, default=None, help="query masks K_q (default: 4, or the fine-tuned model's)")
    p.add_argument("--max-length", type=int, default=None, help="query token budget (default 256)")
    p.add_argument("--denoise-steps", type=int, default=None, help="denoising steps (default: 1, or the model's)")
    return p


def search(args: argparse.Namespace) -> Path:
    """The run of ``args`` (see the module docstring); returns the written file."""
    from diffretriever_pyserini.encode.writers import read_metadata
    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.index.multivector import MultiVectorStore
    from diffretriever_pyserini.readout.readers import QueryReader
    from diffretriever_pyserini.search.runs import finish_run, search_depth, write_run

    index = Path(args.index)
    if not (index / "kvectors.npy").is_file():
        raise UserError("not a dense encoding folder with K vectors (no kvectors.npy)", index)
    request = read_metadata(index).get("request") or {}
    encoder = args.encoder or request.get("model")
    if not encoder:
        raise UserError("the index records no model; pass --encoder", index)
    topics = _topics(args.topics)
    reader = QueryReader(encoder, device=args.device, k=args.k, max_length=args.max_length,
                         batch_size=args.batch_size, denoise_steps=args.denoise_steps,
                         adapter=args.adapter or request.get("adapter"), family=request.get("family"),
                         dtype=request.get("dtype"), shifted_logits=bool(request.get("shifted_logits")))
    reader.prime(list(topics.values()))
    store = MultiVectorStore.open(index)
    queries = {qid: reader.kvectors(text) for qid, text in topics.items()}
    depth = search_depth(args.hits, args.remove_query)
    options = MaxSimOptions(args.depth, args.nprobe, args.ndocs, args.rerank)
    found = get_method(args.method).search(store, index, queries, depth, options)
    return write_run(args.output, finish_run(found, args.hits, args.remove_query), args.run_tag, k=args.hits,
                     topic_order=topics)


def _topics(value: str) -> dict[str, str]:
    from diffretriever_pyserini.datasets.custom import read_custom_topics

    path = Path(value)
    if not path.is_file():
        from diffretriever_pyserini.errors import UserError
        from diffretriever_pyserini.pyserini_bridge.topics import local_file

        found = local_file(value, "topics")
        if found is None:
            raise UserError(f"topics {value!r} is neither a file nor a topics name Pyserini holds on this machine")
        path = found
    return read_custom_topics(path)


def main(argv=None) -> int:
    from diffretriever_pyserini.cli import describe_error

    args = build_parser().parse_args(argv)
    try:
        print(search(args))
    except Exception as exc:  # noqa: BLE001 - one line, as every command of this package
        print(f"diffretriever_pyserini.search.maxsim: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
