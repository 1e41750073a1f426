"""A study shared through a real PostgreSQL server, started here when initdb/pg_ctl are on the
PATH (Debian package ``postgresql``); skipped otherwise."""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import CORE_ONLY, REPO, SMOKE

pytestmark = pytest.mark.slow

FAST = [
    "teacher.train.epochs=1",
    "teacher.train.max_batches=2",
    "student.train.epochs=2",
    "student.train.max_batches=3",
    *CORE_ONLY,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway server; yields its URL. PostgreSQL refuses to run as root: then it runs as
    the ``postgres`` user."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("initdb and pg_ctl are not on the PATH (Debian package postgresql)")
    psycopg2 = pytest.importorskip("psycopg2")
    # Outside pytest's private tmp folder: the server's user must reach its files.
    root = Path(tempfile.mkdtemp(prefix="kdlens-pg-"))
    os.chmod(root, 0o755)
    data, sockets = root / "data", root / "sockets"
    data.mkdir()
    sockets.mkdir()
    prefix, user = [], getpass.getuser()
    if os.geteuid() == 0:
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(
        [*prefix, "initdb", "-D", str(data), "-A", "trust", "-U", user],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    # A log file, not pipes: the server outlives pg_ctl and would hold them open.
    subprocess.run(
        [
            *prefix,
            "pg_ctl",
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "sockets" / "log"),
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE kdlens")
        conn.close()
        yield f"postgresql://{user}@127.0.0.1:{port}/kdlens", Path(psycopg2.__file__).parents[1]
    finally:
        subprocess.run(
            [*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_machines_share_a_study_on_postgresql(postgres, tmp_path):
    """Two commands with their own folders (two machines), one of them with 2 workers, on one
    study: the 2 x 2 grid completes with no cell run twice."""
    import optuna

    url, driver = postgres
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(driver)]),
        "OMP_NUM_THREADS": "1",
    }
    commands = []
    for name, workers in (("a", "2"), ("b", "1")):
        args = [sys.executable, "-m", "kdlens", "sweep", str(SMOKE), "--quiet"]
        args += ["--grid", "distill.method=kd,dkd", "--grid", "distill.alpha=0.1,0.5"]
        args += ["--seeds", "1", "--out", str(tmp_path / name), "--study", "shared"]
        args += ["--storage", url, "--workers", workers]
        for f in FAST:
            args += ["--set", f]
        commands.append(args)
    procs = [subprocess.Popen(c, env=env, stderr=subprocess.PIPE, text=True) for c in commands]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    from kdlens.search.storage import with_driver

    trials = optuna.load_study(study_name="shared", storage=with_driver(url)).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == 4 and len(complete) == 4
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 4
    folders = [t.user_attrs["kdlens.folder"] for t in complete]
    found = [f for f in folders if (tmp_path / "a" / f).is_dir() or (tmp_path / "b" / f).is_dir()]
    assert len(found) == 4  # each trial ran in one of the two folders
