"""The recipes of docs/your-own.md run as written: every block marked ``<!-- recipe: NAME -->`` is
run with bash, in doc order, in one folder holding a copy of the repository's configs (as a user
copy-pasting the page at the repository root would), with ``kdlens`` and ``python`` on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "your-own.md"
MARKED = re.compile(r"<!-- recipe: ([\w-]+) -->\s*```bash\n(.*?)```", re.S)


def recipes() -> list[tuple[str, str]]:
    return MARKED.findall(DOC.read_text())


def test_every_bash_block_of_the_page_is_a_marked_recipe():
    names = [name for name, _ in recipes()]
    assert names[:3] == ["data-imagefolder", "data-csv", "data-hf"]
    assert {"timm-imagefolder", "sklearn-csv", "sklearn-face", "logits", "text"} <= set(names)
    assert DOC.read_text().count("```bash") == len(names)  # none escapes the test below


def _shims(folder: Path) -> dict[str, str]:
    """``kdlens`` and ``python`` as a fresh install would give them, for this checkout."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, command in (
        ("kdlens", f'"{sys.executable}" -m kdlens'),
        ("python", f'"{sys.executable}"'),
    ):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # a busy CI machine
    return env


@pytest.mark.slow
def test_the_recipes_run_as_written(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(REPO / "configs", work / "configs")
    env = _shims(tmp_path)
    for name, script in recipes():
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"recipe {name} failed:\n{done.stderr[-3000:]}"
    for run in (
        "digits_png",
        "wine_csv",
        "digits_hf",
        "timm_digits",
        "wine_gb",
        "logits_digits",
        "text",
    ):
        assert (work / "runs" / run / "report.html").is_file(), run
    assert "class_" in (work / "runs" / "wine_gb" / "readable" / "tree_kd_rules.txt").read_text()
