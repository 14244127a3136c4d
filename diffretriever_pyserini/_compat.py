"""Pyserini imports in one place, across the 1.x and 2.x APIs, with Java 21 set up first.

Importing Pyserini may start the JVM, so :func:`ensure_java` runs before it. 2.x renamed
``QueryEncoder(encoded_query_dir)`` to ``encoded_queries_dir``: our encoders call ``super().__init__()`` with no
arguments, which both accept.
"""

from diffretriever_pyserini.java import ensure_java

ensure_java()

try:
    from pyserini.encode import DocumentEncoder as PyseriniDocumentEncoder
    from pyserini.encode import QueryEncoder as PyseriniQueryEncoder
except ModuleNotFoundError as exc:  # pragma: no cover - pyserini is a hard dependency
    if exc.name != "pyserini":
        raise
    raise ImportError("diffretriever_pyserini needs Pyserini >= 1.6: pip install 'pyserini>=1.6'") from exc

__all__ = ["PyseriniDocumentEncoder", "PyseriniQueryEncoder", "ensure_java"]
