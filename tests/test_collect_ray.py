"""Parallel collection on Ray (`salus collect --workers N`): real Ray, real simulator, real embedded
ensemble, tiny settings. Every Ray process stays on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
before Ray is imported; no dashboard).

Order matters for speed only: the first test starts and stops its own local Ray (as the command
does); the cluster tests share one two-node cluster for the module (its start-up takes about 25 s
on a loaded 2-core machine); the command-line tests run Ray in their own subprocesses.
"""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported anywhere  # noqa: E402

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from salus_engine.config import CollectConfig
from salus_engine.events import EpisodeFinished, WorkerStateChanged
from salus_engine.jobs import run_collection
from salus_engine.store import EpisodeStore
from salus_engine.store.verify import verify_store
from tests.conftest import sigkill_after_first_episode, tiny_flags, tiny_settings

ROOT = Path(__file__).resolve().parents[1]
SEED = 30
EPISODES = 6
RAY_GONE_WITHIN_S = 240
"""Upper bound on the wait for a killed driver's Ray processes to end (Ray's agents notice their
raylet's death within about a minute on a loaded machine); the test returns as soon as they are gone."""

pytestmark = pytest.mark.slow


def tiny_config(out: Path, **values) -> CollectConfig:
    return tiny_settings(out, **{"episodes": EPISODES, "seed": SEED, **values})


def assert_same_episodes(store_path, reference_path, episode_ids=None) -> None:
    """Same seed, outcome, failure step and length; signals and member actions within 1e-6."""
    store, reference = EpisodeStore.open(store_path), EpisodeStore.open(reference_path)
    for episode_id in episode_ids if episode_ids is not None else reference.episode_ids:
        got, want = store.episode_by_id(episode_id), reference.episode_by_id(episode_id)
        assert (got.meta.seed, got.meta.failure_type, got.meta.failure_step, got.meta.episode_length) == \
               (want.meta.seed, want.meta.failure_type, want.meta.failure_step, want.meta.episode_length), episode_id
        np.testing.assert_allclose(got.signals, want.signals, rtol=0, atol=1e-6, err_msg=f"episode {episode_id}")
        np.testing.assert_allclose(got.member_actions, want.member_actions, rtol=0, atol=1e-6)


def assert_complete(path, total=EPISODES) -> None:
    store = EpisodeStore.open(path)
    assert store.episode_ids == list(range(total))
    assert [m.seed for m in store.metas()] == [SEED + i for i in range(total)]
    assert not (Path(path) / ".staging").exists()
    report = verify_store(path)
    assert report.ok, report.problems


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory) -> Path:
    """The in-process collection (one worker, no Ray) of the same seeds."""
    out = tmp_path_factory.mktemp("reference") / "store"
    summary = run_collection(tiny_config(out))
    assert summary.total_in_store == EPISODES
    return out


def test_two_local_workers_give_the_in_process_episodes(tmp_path, reference_store):
    import ray

    assert not ray.is_initialized(), "this test checks the local Ray that the collection starts itself"
    events = []
    out = tmp_path / "store"
    summary = run_collection(tiny_config(out, workers=2), sink=events.append)
    assert not ray.is_initialized(), "the collection shuts down the Ray it started"
    assert summary.total_in_store == EPISODES and summary.episodes_written == EPISODES and not summary.stopped
    assert_complete(out)
    assert_same_episodes(out, reference_store)
    finished = [e.episode_id for e in events if isinstance(e, EpisodeFinished)]
    assert finished == list(range(EPISODES)), "episodes are written (and reported) in id order"
    pids = {e.pid for e in events if isinstance(e, WorkerStateChanged) and e.pid}
    assert len(pids) == 2 and os.getpid() not in pids
    ran = {e.worker_index for e in events if isinstance(e, WorkerStateChanged) and e.state == "running"}
    assert ran and ran <= {0, 1}  # which worker runs which episode depends on their loading times


@pytest.fixture(scope="module")
def two_node_cluster():
    """Two Ray nodes on this machine, one CPU each; the test process is connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_workers_land_on_both_nodes_of_a_cluster(tmp_path, two_node_cluster, reference_store):
    import ray

    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    events = []
    out = tmp_path / "store"
    summary = run_collection(tiny_config(out, workers=2, address=two_node_cluster.address), sink=events.append)
    assert summary.total_in_store == EPISODES
    assert_complete(out)
    assert_same_episodes(out, reference_store)
    used = {e.node_id for e in events if isinstance(e, WorkerStateChanged) and e.node_id}
    assert used == nodes, "one worker on each node"
    assert ray.is_initialized(), "a cluster the process was connected to stays connected"


def test_a_worker_killed_mid_episode_is_replaced_and_its_episode_reruns(tmp_path, two_node_cluster, reference_store):
    events = []
    killed = {}

    def sink(event) -> None:
        events.append(event)
        # A worker was just handed episode 2 or later (the driver emits this right after the hand-out,
        # and an episode takes far longer than this call): kill its process now, mid-episode. Which
        # worker takes it depends on their loading times.
        if (not killed and isinstance(event, WorkerStateChanged) and event.state == "running"
                and event.episode_id is not None and event.episode_id >= 2):
            killed.update(pid=event.pid, episode_id=event.episode_id, worker=event.worker_index)
            os.kill(event.pid, signal.SIGKILL)

    out = tmp_path / "store"
    summary = run_collection(tiny_config(out, workers=2, address=two_node_cluster.address), sink=sink)
    assert killed, "no worker took episode 2"
    restarted = [e for e in events if isinstance(e, WorkerStateChanged) and e.state == "restarting"]
    assert [e.worker_index for e in restarted] == [killed["worker"]], "the driver saw the death (mid-episode)"
    reran = [e for e in events if isinstance(e, WorkerStateChanged) and e.state == "running"
             and e.episode_id == killed["episode_id"]]
    assert len(reran) == 2 and reran[1].pid not in (0, killed["pid"]), "re-run on a fresh worker process"
    assert summary.total_in_store == EPISODES and summary.episodes_written == EPISODES
    assert_complete(out)
    assert_same_episodes(out, reference_store)


def _ray_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries `marker` (the collection and everything it started)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("SALUS_TEST_RUN") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _wait_until_gone(marker: str) -> list[psutil.Process]:
    deadline = time.monotonic() + RAY_GONE_WITHIN_S
    while (left := _ray_processes(marker)) and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=2)
    return left


def _collect_command(out: Path, total: int, *extra: str) -> list[str]:
    flags = [*tiny_flags(max_steps=24), "--workers", "2"]
    return [sys.executable, "-m", "salus_engine.cli", "collect", "--episodes", str(total), "--out", str(out),
            "--seed", str(SEED), *flags, *extra]


def test_sigkill_of_the_driver_then_resume_completes_the_store(tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()  # the subprocesses start their own local Ray
    out = tmp_path / "store"
    total = 12  # killed after its first episode, with two workers the collection has ten or more to go
    marker = uuid.uuid4().hex
    env = {**os.environ, "SALUS_TEST_RUN": marker}
    # killed once episode 0 is in the store: the workers are mid-collection
    sigkill_after_first_episode(_collect_command(out, total), tmp_path, env=env, start_new_session=True)
    killed_at = len(EpisodeStore.open(out))
    assert 1 <= killed_at < total
    lingering = _wait_until_gone(marker)
    assert not lingering, f"the killed driver's Ray processes linger: {[p.name() for p in lingering]}"

    marker = uuid.uuid4().hex
    result = subprocess.run(_collect_command(out, total, "--resume"), cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "SALUS_TEST_RUN": marker})
    assert result.returncode == 0, result.stderr
    assert_complete(out, total)
    assert len({m.episode_id for m in EpisodeStore.open(out).metas()}) == total
    assert not _wait_until_gone(marker), "the resumed collection's Ray processes linger"


def test_sighup_to_the_process_group_stops_after_the_running_episodes(tmp_path):
    """A dropped SSH session sends SIGHUP to the whole foreground process group: the driver stops its
    workers after their current episodes and writes them; Ray's own processes do not die first."""
    out = tmp_path / "store"
    total = 40
    marker = uuid.uuid4().hex
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(_collect_command(out, total), cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, start_new_session=True, env={**os.environ, "SALUS_TEST_RUN": marker})
    try:
        first = next((line for line in proc.stdout if line.startswith("episode")), None)
        assert first is not None, f"the collector ended before its first episode:\n{(tmp_path / 'stderr.txt').read_text()}"
        os.killpg(proc.pid, signal.SIGHUP)
        rest = proc.stdout.read()
        returncode = proc.wait(timeout=600)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert "stopped early" in rest
    written = len(EpisodeStore.open(out))
    assert 1 <= written < total
    assert_complete(out, written)
    assert not _wait_until_gone(marker)


def test_nothing_at_the_address_is_one_line(tmp_path):
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "salus_engine.cli", "collect", "--episodes", "2", "--out",
                             str(tmp_path / "a"), "--address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True,
                            text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("salus: error: no Ray cluster at 127.0.0.1:") and "ray start --head" in lines[0]
    assert not (tmp_path / "a").exists()


def test_console_shows_the_worker_table(tmp_path, two_node_cluster):
    import asyncio

    from textual.widgets import DataTable

    from salus_tui.app import SalusApp
    from tests.test_console_support import wait_for_jobs

    config = tiny_config(tmp_path / "store", workers=2, address=two_node_cluster.address, episodes=2)

    async def scenario():
        app = SalusApp(config, checkpoint="", log_path=tmp_path / "session.log", theme="salus-dark")
        async with app.run_test(size=(100, 40)) as pilot:
            screen = app.screen
            table = screen.query_one("#workers", DataTable)
            assert table.display, "shown before the start when the settings name Ray workers"
            await pilot.press("s")
            await wait_for_jobs(pilot)
            await pilot.pause()
            rows = [table.get_row(key) for key in table.rows]
            assert sorted(row[0] for row in rows) == ["0", "1"]
            assert all(row[3] == "stopped" and row[1] not in ("", "-") for row in rows), rows
            assert sum(int(row[5]) for row in rows) == 2
            assert len(EpisodeStore.open(config.out)) == 2

    asyncio.run(scenario())
