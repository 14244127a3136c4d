"""The README and docs: every generated table equals what `make docs` builds from the committed result files, the
README stays a front page, and every command it shows names a real target, sub-command, flag or module."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import docsgen  # noqa: E402


def test_generated_tables_match_the_committed_results():
    rendered = docsgen.render(REPO / "results")
    stale = [str(p.relative_to(REPO)) for p, text in rendered.items() if p.read_text() != text]
    assert not stale, f"run make docs: these files hold tables the committed results no longer give: {stale}"
    assert len(rendered) >= 5


def test_a_changed_result_file_is_caught(tmp_path):
    """The check can fail: one metric changed in a copy of the results changes the README's table."""
    import json
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(REPO / "results", copy)
    path = next((copy / "runs" / "beir-v1.0.0-scifact" / "bm25-flat").glob("*.metrics.json"))
    record = json.loads(path.read_text())
    record["metrics"]["ndcg_cut_10"] += 0.01
    path.write_text(json.dumps(record))
    rendered = docsgen.render(copy)
    assert rendered[REPO / "README.md"] != (REPO / "README.md").read_text()


def test_every_table_has_its_block_and_the_readme_is_a_front_page():
    for name, (rel, _) in docsgen.TABLES.items():
        assert f"<!-- generated:{name} -->" in (REPO / rel).read_text(), (name, rel)
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    for link in re.findall(r"\]\((docs/[^)#]+)\)", "\n".join(lines)):
        assert (REPO / link).exists(), link


def _commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line:
                out.append(shlex.split(line))
    return out


def test_every_readme_command_names_what_exists():
    from diffretriever_pyserini.cli.parser import build_parser

    commands = _commands()
    assert len(commands) >= 8
    make_targets = set(re.findall(r"^([\w%-]+):", (REPO / "Makefile").read_text(), re.M))
    for cmd in commands:
        if cmd[0] == "make":
            target = cmd[1]
            assert target in make_targets or target.startswith("beir-"), cmd
            assert subprocess.run(["make", "-n", *cmd[1:]], cwd=REPO, capture_output=True).returncode == 0, cmd
        elif cmd[:3] == ["python", "-m", "diffretriever_pyserini"]:
            build_parser().parse_args(cmd[3:])  # every sub-command and flag exists (SystemExit otherwise)
        elif cmd[:2] == ["python", "-m"]:
            module = cmd[2]
            assert module.startswith("pyserini."), cmd
            found = subprocess.run([sys.executable, "-c", f"import importlib.util as u; "
                                    f"print(u.find_spec('{module}') is not None)"], capture_output=True, text=True)
            assert found.stdout.strip() == "True", cmd
        else:
            pytest.fail(f"a README command this test does not know how to check: {cmd}")
