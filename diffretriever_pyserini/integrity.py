"""Index files checked before they are used: each writer records the size and sha256 of the files it wrote in the
folder's metadata, and each reader verifies them when it opens the folder.

A size mismatch (a truncated or over-long file) is found on every open. The hash is checked on the first open after
a file changed: a verified (size, modification time, hash) is kept in ``.verified.json`` beside the files, so a
large index is hashed once, not on every search. A mismatch names the file and says how to rebuild it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffretriever_pyserini.errors import UserError
from diffretriever_pyserini.encode.writers import file_checksum

STAMP = ".verified.json"


def verify_files(folder: Path, recorded: dict[str, dict] | None) -> None:
    """Check the files ``recorded`` by :func:`~diffretriever_pyserini.encode.writers.describe_files` (nothing
    recorded: a
    folder from an older version, nothing to check). Raises UserError naming a missing, resized or changed file."""
    if not recorded:
        return
    folder = Path(folder)
    rebuild = f"the file is damaged: delete {folder} and run the same command again to rebuild it"
    stamp = folder / STAMP
    try:
        verified = json.loads(stamp.read_text()) if stamp.is_file() else {}
    except (OSError, json.JSONDecodeError):
        verified = {}
    changed = False
    for name, want in recorded.items():
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            raise UserError(f"missing; {rebuild}", path) from None
        if st.st_size != want["bytes"]:
            raise UserError(f"{st.st_size} bytes where {want['bytes']} were written; {rebuild}", path)
        seen = [st.st_size, st.st_mtime_ns, want["sha256"]]
        if verified.get(name) == seen:
            continue
        if file_checksum([path]) != want["sha256"]:
            raise UserError(f"its sha256 differs from the one recorded when it was written; {rebuild}", path)
        verified[name] = seen
        changed = True
    if changed:
        try:
            tmp = stamp.with_name(f"{STAMP}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(verified))
            os.replace(tmp, stamp)
        except OSError:  # a read-only index is verified again next time
            pass


def check_docid_count(folder: Path, expected: int) -> None:
    """The ``docid`` file of a FAISS folder holds one id per indexed vector (Pyserini only asserts it)."""
    path = Path(folder) / "docid"
    with open(path, encoding="utf-8") as f:
        lines = sum(1 for line in f if line.strip())
    if lines != expected:
        raise UserError(f"{lines} docids for {expected} indexed vectors; delete {folder} and run the same command "
                        "again to rebuild it", path)
