"""The run folder has one owner: marker, lock, safe --overwrite, resume as a transaction."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kdlens.cli import main
from kdlens.run import RunFolder
from kdlens.run.folder import LOCK_OWNER, MARKER
from tests.conftest import CORE_ONLY, REPO, SMOKE

RUN = ["run", "--config", str(SMOKE), "--quiet", *sum((["--set", s] for s in CORE_ONLY), [])]


def _snapshot(folder):
    """Every file's bytes hash and mtime: a refused command must change none."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in (LOCK_OWNER,) and not p.name.endswith(".lock"):
            out[str(p.relative_to(folder))] = (
                hashlib.sha1(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
            )
    return out


@pytest.fixture(scope="module")
def core_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("core") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def test_the_marker_is_written_and_names_the_run(core_run):
    marker = json.loads((core_run / MARKER).read_text())
    assert {"kdlens", "created", "command", "config"} <= set(marker)
    assert marker["config"]["data"]["name"] == "digits"
    assert RunFolder(core_run).is_run()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main([*RUN, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a kdlens run folder" in err and len(err.splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_overwrite_replaces_a_run_folder_and_an_empty_one(core_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    (copy / "stray.txt").write_text("left by the old run")
    assert main([*RUN, "--out", str(copy), "--overwrite"]) == 0
    assert not (copy / "stray.txt").exists() and (copy / "metrics.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*RUN, "--out", str(empty)]) == 0


def _hold_lock(folder):
    """A child process that holds the folder's lock until killed."""
    code = (
        "import sys, time; from kdlens.run import RunFolder\n"
        "with RunFolder(sys.argv[1]).locked():\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_stops_naming_the_holder_and_a_killed_holder_blocks_nothing(
    core_run, tmp_path, capsys
):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    (copy / "metrics.json").unlink()
    holder = _hold_lock(copy)
    try:
        before = _snapshot(copy)
        assert main(["run", "--resume", str(copy), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"pid {holder.pid}" in err and len(err.splitlines()) == 1
        assert main(["report", str(core_run)]) == 0  # another folder is not locked
        assert _snapshot(copy) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel released the dead holder's lock: the resume goes through.
    assert main(["run", "--resume", str(copy), "--quiet"]) == 0
    assert (copy / "metrics.json").is_file()


def test_two_runs_started_together_one_wins(tmp_path):
    out = tmp_path / "race"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kdlens", *RUN, "--out", str(out)]
    first = subprocess.Popen([*cmd, "--set", "student.train.epochs=6"], env=env)
    deadline = time.monotonic() + 120
    while not (out / LOCK_OWNER).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.wait() == 0
    assert second.returncode == 2
    # Refused by the lock, or (if the first was already past its first stage when the second
    # looked) by the folder's state: either way in one line, and the folder is the first's.
    err = second.stderr.strip()
    assert "in use by another kdlens process" in err or "already exists" in err, err
    assert len(err.splitlines()) == 1
    config = (out / "config.yaml").read_text()
    assert "epochs: 6" in config  # the folder holds the first run only


def test_a_refused_resume_changes_no_file_and_names_stage_and_field(core_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    before = _snapshot(copy)
    assert main(["run", "--resume", str(copy), "--set", "distill.temperature=8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "stage 'kd'" in err and "distill.temperature" in err and len(err.splitlines()) == 1
    assert _snapshot(copy) == before
    # A --set that cannot even load is refused the same way, before anything is written.
    assert main(["run", "--resume", str(copy), "--set", "distill.alpha=7", "--quiet"]) == 2
    assert _snapshot(copy) == before


def test_a_resume_may_change_what_no_finished_stage_used(core_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    (copy / "metrics.json").unlink()
    assert main(["run", "--resume", str(copy), "--set", "explain.n_examples=16", "--quiet"]) == 0
    assert "n_examples: 16" in (copy / "config.yaml").read_text()


def test_a_run_killed_before_its_config_can_be_rerun_or_resumed(core_run, tmp_path):
    for how in ("rerun", "resume"):
        out = tmp_path / how
        out.mkdir()
        shutil.copy(core_run / MARKER, out / MARKER)  # killed right after the marker
        (out / ".config.yaml.abc123.tmp").write_text("half a file")
        args = [*RUN, "--out", str(out)] if how == "rerun" else ["run", "--resume", str(out)]
        assert main([*args, "--quiet"] if how == "resume" else args) == 0, how
        assert (out / "metrics.json").is_file()
        assert not list(out.rglob("*.tmp")), how


def test_report_on_a_run_killed_before_evaluation_says_so(core_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    (copy / "metrics.json").unlink()
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "before its models were evaluated" in err and "--resume" in err


@pytest.mark.parametrize("name", ["models.json", "metrics.json"])
def test_a_corrupt_json_file_is_one_line_naming_it(core_run, tmp_path, capsys, name):
    copy = tmp_path / "copy"
    shutil.copytree(core_run, copy)
    (copy / name).write_text("{not json")
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and len(err.splitlines()) == 1
