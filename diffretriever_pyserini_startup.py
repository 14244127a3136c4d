"""The module the installed ``diffretriever_pyserini_startup.pth`` imports when Python starts.

It only forwards to :func:`diffretriever_pyserini.pyserini_bridge.hook.startup` (Java 21 for Pyserini, the offline
prebuilt-index catalogue and ``--encoder diffretriever:...`` in Pyserini's own commands), and never raises: a broken
or removed package must not break every Python start.
"""


def startup() -> None:
    """Run the plugin's start-up hook; never raises."""
    try:
        from diffretriever_pyserini.pyserini_bridge.hook import startup as run
    except Exception:
        return
    run()
