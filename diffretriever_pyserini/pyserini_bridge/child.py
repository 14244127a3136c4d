"""``python -m diffretriever_pyserini.pyserini_bridge.child <parent pid> <module> [args]``: run a Python module as a
child that dies with its parent.

Pyserini's indexer is started as a subprocess; when the command that started it is killed, the indexer must not run
on as an orphan. The child asks Linux for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, done in the child
itself, as ``preexec_fn`` is unsafe in a parent running JVM threads) and exits at once if the parent is already gone.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path


def die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(137)


def command(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args`` as a child of this process that dies with it."""
    return [sys.executable, "-m", "diffretriever_pyserini.pyserini_bridge.child", str(os.getpid()), module, *args]


def run_java_child(module: str, args: list[str], data: Path, step: str, where: Path, detail: str = "",
                   advice: str = "", **kwargs):
    """Run a Lucene step (``python -m module args``) as a child with a Java heap sized for the ``data`` folder
    (``DIFFRETRIEVER_JAVA_HEAP`` overrides); its JVM exits on the first OutOfMemoryError, which becomes one
    UserError naming ``step`` (``detail`` beside the heap, ``advice`` after the setting that raises it). Other
    keyword arguments go to ``subprocess.run``; returns the CompletedProcess."""
    import subprocess

    from diffretriever_pyserini.errors import UserError
    from diffretriever_pyserini.pyserini_bridge.java import HEAP_ENV, OOM_EXIT_CODE, default_heap, heap_setting

    heap = heap_setting() or default_heap(sum(f.stat().st_size for f in Path(data).rglob("*") if f.is_file()))
    proc = subprocess.run(command(module, *args), env={**os.environ, HEAP_ENV: heap}, stdin=subprocess.DEVNULL,
                          text=True, **kwargs)
    if proc.returncode == OOM_EXIT_CODE:
        raise UserError(f"{step} ran out of Java heap (-Xmx{heap}{detail}); set {HEAP_ENV} to a larger size (e.g. "
                        f"{HEAP_ENV}=8g){advice}", where)
    return proc


if __name__ == "__main__":
    die_with_parent(int(sys.argv[1]))
    from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini

    prepare_pyserini()
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
