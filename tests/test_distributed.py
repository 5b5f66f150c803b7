"""Indexing on a real local Ray cluster: the same vectors as an in-process run, bad files
with the same reasons, and nothing lost or embedded twice when an actor or the driver is
killed mid-run."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from tests.helpers import DEV, FAKE, make_collection, requires_dev, stored_vectors

ray = pytest.importorskip("ray")
BIN = Path(sys.executable).parent


@pytest.mark.heavy
def test_ray_actors_embed_as_this_process_does(tmp_path: Path) -> None:
    from artsearch.distributed import RayOptions

    root = tmp_path / "coll"
    make_collection(root, 30)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    runs = {}
    for name, engine in [("local", None), ("ray", RayOptions(actors=2))]:
        opts = IndexOptions(backbone=FAKE, engine=engine,
                            extractor={"num_workers": 0, "precision": "fp32"})
        with ArtIndex(tmp_path / name, create=True) as idx:
            runs[name] = index_collection(root, idx, opts)
    assert runs["ray"].runtime["engine"] == "ray" and runs["ray"].runtime["actors"] == 2
    assert runs["ray"].embedded == runs["local"].embedded == 30
    assert runs["ray"].failed == runs["local"].failed  # the same one-line reason
    here, there = stored_vectors(tmp_path / "local"), stored_vectors(tmp_path / "ray")
    assert here.keys() == there.keys()
    for path, v in here.items():
        assert float(v @ there[path]) >= 0.99999
    with ArtIndex(tmp_path / "ray") as idx:  # a re-run finds nothing to do
        again = index_collection(root, idx, IndexOptions(
            engine=RayOptions(actors=2), extractor={"num_workers": 0}))
    assert again.embedded == 0 and again.unchanged == 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[str]:
    """`ray start --head` plus a second node (another raylet) on this machine."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(BIN / "ray")
    common = ["--disable-usage-stats", "--num-gpus", "0"]
    subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "1",
                    "--include-dashboard", "false", "--temp-dir", temp, *common],
                   check=True, env=env, capture_output=True)
    try:
        # The head made a cluster token (~/.ray/auth_token); the second node must present it.
        subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                        *common], check=True, env={**env, "RAY_AUTH_MODE": "token"},
                       capture_output=True)
        yield "auto"  # the cluster just started here (it also holds the cluster's token)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, check=False)


def _count(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'artsearch.db'}?mode=ro", uri=True,
                             timeout=5) as db:
            return int(db.execute("select count(*) from embeddings").fetchone()[0])
    except sqlite3.Error:
        return 0


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "_EmbedActor" in cmd:
                pids.append(int(entry.name))
    return pids


def _wait(until: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not until():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
@requires_dev()
def test_dev_set_on_a_cluster_survives_a_killed_actor_and_a_killed_driver(
        cluster: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    args = ["index", str(DEV), "--precision", "fp32", "-q"]
    subprocess.run([str(BIN / "artsearch"), *args, "--index", str(local)], check=True,
                   capture_output=True)
    index = tmp_path / "ray"
    command = [str(BIN / "artsearch"), *args, "--index", str(index), "--engine", "ray",
               "--address", cluster, "--actors", "2", "--checkpoint", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait(lambda: _count(index) >= 100 or driver.poll() is not None, 240, "100 vectors")
        assert driver.poll() is None, driver.communicate()
        victims = _actor_pids()
        assert victims, "no extractor actor process found"
        os.kill(victims[0], signal.SIGKILL)  # Ray restarts it and runs its batches again
        killed_at = _count(index)
        _wait(lambda: _count(index) >= killed_at + 300 or driver.poll() is not None, 240,
              "progress after the actor was killed")
        assert driver.poll() is None, driver.communicate()
        driver.send_signal(signal.SIGKILL)  # the driver: no chance to save anything
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate()
    partial = _count(index)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    here, there = stored_vectors(local), stored_vectors(index)
    assert partial < len(here)  # the kill did leave work for the re-run
    assert here.keys() == there.keys()  # every image exactly once: paths are unique
    with ArtIndex(index) as idx:
        info = idx.info()
        fids, _ = idx.id_maps(idx.space("content"))
        stored = idx.vectors(idx.space("content")).ids()
    assert info["artworks"] == len(here) and len(np.unique(fids)) == len(fids) == len(here)
    assert sorted(stored.tolist()) == sorted(fids.tolist())  # FAISS and SQLite agree
    worst = min(float(v @ there[p]) for p, v in here.items())
    assert worst >= 0.999, worst


@pytest.mark.heavy
def test_shards_encoded_in_ray_tasks_make_the_same_index() -> None:
    from artsearch.distributed import ray_shard_runner
    from artsearch.index.ann import build_sharded
    from tests.helpers import clustered

    data = clustered(6_000, 32, seed=9)
    ids = np.arange(6_000, dtype=np.int64) + 100

    def shard(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return ids[lo:hi], data[lo:hi]

    here = build_sharded(shard, 6_000, 32, rows=1_500)
    there = build_sharded(shard, 6_000, 32, rows=1_500, run=ray_shard_runner(cpus=2))
    assert (here.param, here.recall, here.k_factor) == (there.param, there.recall,
                                                        there.k_factor)
    a, b = here.search(data[:20], 10), there.search(data[:20], 10)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
