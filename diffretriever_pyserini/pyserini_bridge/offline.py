"""Pyserini 2.x offline: its prebuilt-index metadata falls back to a local copy, or to nothing, without the network.

Pyserini 2.x reads the catalogue of its prebuilt indexes from JSON files fetched over HTTPS
(``pyserini.prebuilt_index_info``), and two aliases in that module dereference the catalogue while it is imported.
Every ``import pyserini.encode`` / ``pyserini.search.*`` therefore raises ``URLError`` on a machine without network,
although nothing a local index needs comes from that catalogue.

:func:`exec_prebuilt_index_info` runs that module (the start-up import hook calls it in place of the module's own
loader; Pyserini's files are never edited) with ``urlopen`` bound to :class:`MetadataSource.urlopen`:

1. online, the real fetch; each fetched file is kept under the cache folder (``$PYSERINI_CACHE`` or
   ``~/.cache/pyserini``, then ``prebuilt-index-info/<path>``), so a machine that was once online keeps working;
2. when the network cannot be reached (or ``DIFFRETRIEVER_OFFLINE=1``), that kept copy, or a copy a user put there;
3. else an empty catalogue, and one log line saying that prebuilt indexes are unavailable offline. The aliases the
   module dereferences while it is imported get a placeholder entry without download URLs, found by re-running the
   module body on the ``KeyError`` it raised (a few passes, definitions only).

The first network failure is remembered for the process, so a firewalled cluster waits for one time-out, not one per
file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

MODULE = "pyserini.prebuilt_index_info"
OFFLINE_ENV = "DIFFRETRIEVER_OFFLINE"
CATALOGUE_HOST = "raw.githubusercontent.com/castorini/prebuilt-indexes/"
MAX_PLACEHOLDERS = 32
PLACEHOLDER_DESCRIPTION = "prebuilt-index metadata unavailable offline (diffretriever-pyserini placeholder)"


def cache_folder() -> Path:
    """Where fetched catalogue files are kept: ``$PYSERINI_CACHE`` (Pyserini's own setting) or ``~/.cache/pyserini``."""
    root = os.environ.get("PYSERINI_CACHE") or Path.home() / ".cache" / "pyserini"
    return Path(root) / "prebuilt-index-info"


def catalogue_path(url: str) -> str | None:
    """``https://raw.githubusercontent.com/castorini/prebuilt-indexes/<commit>/lucene/x.json`` -> ``lucene/x.json``
    (None for any other URL)."""
    if not isinstance(url, str) or CATALOGUE_HOST not in url:
        return None
    rest = url.split(CATALOGUE_HOST, 1)[1]
    _, _, path = rest.partition("/")
    return path or None


def empty_catalogue(path: str, placeholders: list[str]) -> bytes:
    """An empty catalogue file in the shape Pyserini reads: a record list for Lucene files, a dict for FAISS ones;
    ``placeholders`` become entries without URLs (aliases the module dereferences while it is imported)."""
    records = [{"name": name, "description": PLACEHOLDER_DESCRIPTION, "filename": "", "urls": [], "md5": "",
                "size": 0} for name in placeholders]
    if path.startswith("faiss/"):
        return json.dumps({r["name"]: r for r in records}).encode()
    return json.dumps(records).encode()


class MetadataSource:
    """The ``urlopen`` Pyserini's catalogue module sees: network, then the local copy, then an empty catalogue."""

    def __init__(self, real_urlopen=urllib.request.urlopen):
        self.real_urlopen = real_urlopen
        self.offline = bool(os.environ.get(OFFLINE_ENV))
        self.placeholders: dict[str, list[str]] = {}
        self.warned = False

    def urlopen(self, url, *args, **kwargs):
        path = catalogue_path(url)
        if path is None:
            return self.real_urlopen(url, *args, **kwargs)
        if not self.offline:
            try:
                with self.real_urlopen(url, *args, **kwargs) as response:
                    data = response.read()
                self._keep(path, data)
                return io.BytesIO(data)
            except (urllib.error.URLError, OSError, socket.timeout) as exc:
                self.offline = True
                log.info("prebuilt-index metadata cannot be fetched (%s); using local copies", exc)
        kept = cache_folder() / path
        if kept.is_file() and not self.placeholders.get(path):
            return io.BytesIO(kept.read_bytes())
        if not self.warned:
            self.warned = True
            log.warning("network unreachable: Pyserini's prebuilt indexes are unavailable offline (no local copy of "
                        "their metadata under %s); local indexes work as usual", cache_folder())
        return io.BytesIO(empty_catalogue(path, self.placeholders.get(path, [])))

    def _keep(self, path: str, data: bytes) -> None:
        target = cache_folder() / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError:  # a read-only home must not break Pyserini
            pass


def _failing_catalogue_url(tb) -> str | None:
    """The first URL of the lazy catalogue whose ``__getitem__`` raised, from the traceback (None if not one)."""
    url = None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if tb.tb_frame.f_code.co_name == "__getitem__" and getattr(owner, "_urls", None):
            url = owner._urls[0]
        tb = tb.tb_next
    return url


def exec_prebuilt_index_info(module, code) -> None:
    """Run ``pyserini.prebuilt_index_info``'s ``code`` in ``module`` with the offline-tolerant ``urlopen``."""
    source = MetadataSource()
    initial = dict(module.__dict__)
    real = urllib.request.urlopen
    for _ in range(MAX_PLACEHOLDERS):
        urllib.request.urlopen = source.urlopen  # the module binds it with ``from urllib.request import urlopen``
        try:
            exec(code, module.__dict__)
            return
        except KeyError as exc:
            url = _failing_catalogue_url(exc.__traceback__)
            if not source.offline or url is None or catalogue_path(url) is None:
                raise
            source.placeholders.setdefault(catalogue_path(url), []).append(exc.args[0])
            module.__dict__.clear()
            module.__dict__.update(initial)
        finally:
            urllib.request.urlopen = real
    raise RuntimeError(f"{MODULE}: more than {MAX_PLACEHOLDERS} catalogue entries needed while offline")
