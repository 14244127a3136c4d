"""The package's import graph: no circle, and all Pyserini / Java coupling in the ``pyserini_bridge`` leaf.

Every import is counted, module-level or inside a function (a lazy import is still a dependency).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "diffretriever_pyserini"
BRIDGE = f"{PACKAGE}.pyserini_bridge"
# What may use the bridge: the orchestration layer above it (and the public alias ``encoders``); a name ending in
# ".*" covers a whole package.
USERS_OF_THE_BRIDGE = {f"{PACKAGE}.{m}" for m in ("pipeline.*", "cli.*", "cli", "regressions.anserini",
                                                  "evaluate.paper", "evaluate.report", "encoders", "search.modes",
                                                  "search.maxsim.__main__", "training.build", "training.budget")}
# Core modules whose code must never reach Pyserini, pyjnius or the bridge, even lazily.
CORE = {f"{PACKAGE}.{m}" for m in ("readout.readers", "readout.representation", "readout.kmask", "readout.lexical",
                                   "readout.finetuned", "encode.corpus", "encode.sharding", "encode.writers",
                                   "datasets", "datasets.files", "datasets.prepare", "datasets.sources",
                                   "training.trainer", "training.losses", "index.multivector", "index.compressed",
                                   "index.compressed.search", "index.dense", "search.scoring", "search.runs",
                                   "search.maxsim", "fusion", "evaluate.metrics", "prompts", "errors")} | \
    {f"{PACKAGE}.backbones"}


def allowed_user(module: str) -> bool:
    return module in USERS_OF_THE_BRIDGE or any(module == u[:-2] or module.startswith(u[:-1])
                                                for u in USERS_OF_THE_BRIDGE if u.endswith(".*"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (REPO / PACKAGE).rglob("*.py")}
    files["diffretriever_pyserini_startup"] = REPO / "diffretriever_pyserini_startup.py"
    edges = {}
    for name, path in files.items():
        targets = set()
        for imported in imports_of(path):
            if imported in files and imported != name:
                targets.add(imported)
            elif imported.startswith(("pyserini", "jnius")):
                targets.add(imported.split(".")[0])
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``edges`` (a list of modules, first == last), or None: depth-first search."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def reachable(edges, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_circle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_only_the_bridge_touches_pyserini_and_java():
    edges = graph()
    direct = {m for m, targets in edges.items() if targets & {"pyserini", "jnius"}}
    outside = {m for m in direct if not m.startswith(BRIDGE)}
    assert not outside, f"modules importing Pyserini/pyjnius outside {BRIDGE}: {sorted(outside)}"
    users = {m for m, targets in edges.items() if not m.startswith(BRIDGE)
             and any(t.startswith(BRIDGE) for t in targets)} - {"diffretriever_pyserini_startup"}
    unexpected = sorted(u for u in users if not allowed_user(u))
    assert not unexpected, f"unexpected users of the bridge: {unexpected}"
    for bridge_module in [m for m in edges if m.startswith(BRIDGE)]:
        back = {t for t in edges[bridge_module] if allowed_user(t)}
        assert not back, f"{bridge_module} imports back into the layer above it: {sorted(back)}"


@pytest.mark.parametrize("core", sorted(CORE))
def test_core_modules_never_reach_pyserini(core):
    edges = graph()
    below = {core} | reachable(edges, core)
    bad = {m for m in below if m.startswith(BRIDGE) or m in {"pyserini", "jnius"}}
    assert not bad, f"{core} reaches {sorted(bad)}"


def test_reading_and_encoding_import_no_pyserini(tmp_path):
    """Build a reader, encode a corpus, import the sharding and training modules: Pyserini and pyjnius stay
    unimported (the start-up hook's own modules, standard library only, may be there)."""
    code = f"""
import sys
from pathlib import Path
from diffretriever_pyserini.readout.readers import build_reader
from diffretriever_pyserini.encode.corpus import EncodeOutputs, encode_corpus
from diffretriever_pyserini.encode import sharding
from diffretriever_pyserini.training import trainer
reader = build_reader("minilm", "passage", device="cpu", k=2, max_length=96)
docs = [{{"id": "d1", "contents": "Aspirin lowers fever."}}, {{"id": "d2", "contents": "Cells divide."}}]
encode_corpus(reader, docs, EncodeOutputs(Path({str(tmp_path)!r}) / "enc"), batch_size=2)
startup = {{"diffretriever_pyserini.pyserini_bridge" + m for m in ("", ".hook", ".java", ".offline")}}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyserini", "jnius", "jnius_config")
                or (m.startswith("diffretriever_pyserini.pyserini_bridge") and m not in startup))
print("LOADED", loaded)
"""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "DIFFRETRIEVER_NO_PYSERINI_HOOK": "1", "DIFFRETRIEVER_NO_JAVA_HOOK": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout, out.stdout
    assert (tmp_path / "enc" / "sparse" / "metadata.json").is_file()


def test_old_module_paths_warn_and_give_the_new_modules(tmp_path):
    """Every path moved by the stage-package redesign still imports, once, with a DeprecationWarning naming the new
    path; the module is the new one (same objects), or for a split module one holding the names of each part; the
    old ``diffretriever_pyserini.search`` names resolve to the bridge's searchers."""
    code = """
import importlib, sys, warnings
from diffretriever_pyserini._moved import MOVED, new_paths
failures = []
for old in MOVED:
    name = "diffretriever_pyserini." + old
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    targets = [importlib.import_module(t) for t in new_paths(name)]
    said = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning) and name in str(w.message)]
    if len(said) != 1 or not all(t in said[0] for t in new_paths(name)):
        failures.append((name, "warning", said))
    if len(targets) == 1 and module is not targets[0]:
        failures.append((name, "not the new module"))
    for target in targets:
        public = [k for k in vars(target) if not k.startswith("_")]
        if not public or any(getattr(module, k) is not getattr(target, k) for k in public):
            failures.append((name, "names differ from", target.__name__))
    if len(targets) == 1 and module.__spec__.name != targets[0].__name__:
        failures.append((name, "spec overwritten"))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from diffretriever_pyserini.search import dense_searcher
from diffretriever_pyserini.pyserini_bridge.search import dense_searcher as new
if dense_searcher is not new or not any("pyserini_bridge.search" in str(w.message) for w in caught):
    failures.append(("search.dense_searcher",))
from diffretriever_pyserini.representation import KMaskReader, gather_positions
from diffretriever_pyserini import encoding
print("FAILURES", failures, len(MOVED))
"""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIFFRETRIEVER_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FAILURES [] " in out.stdout, out.stdout
    assert int(out.stdout.split()[-1]) >= 20


def test_the_old_path_finder_ignores_other_names():
    from diffretriever_pyserini._moved import MovedModules

    finder = MovedModules()
    assert finder.find_spec("diffretriever_pyserini.not_a_module") is None
    assert finder.find_spec("json") is None
    assert finder.find_spec("diffretriever_pyserini.encoding").name == "diffretriever_pyserini.encoding"
