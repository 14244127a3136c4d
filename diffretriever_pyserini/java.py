"""Java set-up for Pyserini (see :mod:`diffretriever_pyserini_startup`, which the start-up .pth file also uses)."""

import sys
import sysconfig
from pathlib import Path

from diffretriever_pyserini_startup import MIN_JAVA_MAJOR, ensure_java, java_major, system_java_home

__all__ = ["MIN_JAVA_MAJOR", "ensure_java", "java_major", "system_java_home", "install_startup_hook"]

PTH_NAME = "diffretriever_pyserini_startup.pth"
PTH_LINE = "import diffretriever_pyserini_startup as _h; _h.startup()\n"


def install_startup_hook(site_dir: Path | None = None) -> Path:
    """Write the start-up .pth file (a regular ``pip install`` does this; editable installs need this call)."""
    site_dir = Path(site_dir or sysconfig.get_paths()["purelib"])
    target = site_dir / PTH_NAME
    target.write_text(PTH_LINE)
    print(f"wrote {target} (Python {sys.version.split()[0]})")
    return target
