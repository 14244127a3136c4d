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
# Modules kept only so that old import paths work for one release (they re-export the bridge).
DEPRECATED = {f"{PACKAGE}.{m}" for m in ("search", "indexing", "java", "pyserini_plugin")}
# What may use the bridge: the orchestration layer above it (and the public alias ``encoders``).
USERS_OF_THE_BRIDGE = {f"{PACKAGE}.{m}" for m in ("pipeline", "cli", "anserini", "paper", "report", "encoders", "modes",
                                                  "training.build", "training.budget")}
# Core modules whose code must never reach Pyserini, pyjnius or the bridge, even lazily.
CORE = {f"{PACKAGE}.{m}" for m in ("readers", "representation", "encoding", "sharding", "writers", "datasets",
                                   "training.trainer", "training.losses", "multivector", "compressed",
                                   "dense_index", "scoring", "fusion", "runs", "evaluation", "lexical", "prompts",
                                   "finetuned", "errors")} | {f"{PACKAGE}.backbones"}


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
    users = {m for m, targets in edges.items() if not m.startswith(BRIDGE) and m not in DEPRECATED
             and any(t.startswith(BRIDGE) for t in targets)} - {"diffretriever_pyserini_startup"}
    assert users <= USERS_OF_THE_BRIDGE, f"unexpected users of the bridge: {sorted(users - USERS_OF_THE_BRIDGE)}"
    for bridge_module in [m for m in edges if m.startswith(BRIDGE)]:
        back = {t for t in edges[bridge_module] if t in USERS_OF_THE_BRIDGE or t in DEPRECATED}
        assert not back, f"{bridge_module} imports back into the layer above it: {sorted(back)}"


@pytest.mark.parametrize("core", sorted(CORE))
def test_core_modules_never_reach_pyserini(core):
    edges = graph()
    below = {core} | reachable(edges, core)
    bad = {m for m in below if m.startswith(BRIDGE) or m in {"pyserini", "jnius"} or m in DEPRECATED}
    assert not bad, f"{core} reaches {sorted(bad)}"


def test_reading_and_encoding_import_no_pyserini(tmp_path):
    """Build a reader, encode a corpus, import the sharding and training modules: Pyserini and pyjnius stay
    unimported (the start-up hook's own modules, standard library only, may be there)."""
    code = f"""
import sys
from pathlib import Path
from diffretriever_pyserini.readers import build_reader
from diffretriever_pyserini.encoding import EncodeOutputs, encode_corpus
from diffretriever_pyserini import sharding
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
