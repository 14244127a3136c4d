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


def die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(137)


def command(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args`` as a child of this process that dies with it."""
    return [sys.executable, "-m", "diffretriever_pyserini.pyserini_bridge.child", str(os.getpid()), module, *args]


if __name__ == "__main__":
    die_with_parent(int(sys.argv[1]))
    from diffretriever_pyserini.pyserini_bridge.hook import prepare_pyserini

    prepare_pyserini()
    sys.argv = [sys.argv[2], *sys.argv[3:]]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
