"""`salus export --format lerobot`: stores written as LeRobotDatasets by lerobot's own writer and read
back by lerobot's own `LeRobotDataset(repo_id, root=OUT)`, offline, frame by frame."""

from __future__ import annotations

import json
import threading

import datasets.config  # lerobot[dataset] (datasets, pyarrow, pandas, av): what `salus export` needs beside lerobot
import huggingface_hub.constants
import numpy as np
import pytest

from salus_engine.cli import EXIT_USER_ERROR, main
from salus_engine.events import ProgressUpdate
from salus_engine.jobs import run_collection
from salus_engine.sim.env import INSTRUCTION
from salus_engine.store import EpisodeRecord, EpisodeStore, EpisodeWriter, StoreError
from salus_engine.store.layout import INTERVENTION_KINDS
from salus_engine.store.lerobot_export import SIDECAR, export_lerobot, export_store, repo_id_for
from tests.conftest import tiny_settings

CAMERAS = ("front", "wrist")


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A real 2-episode collection with two cameras (64 px, 24 steps): format 4 without a monitor."""
    out = tmp_path_factory.mktemp("collection") / "store"
    config = tiny_settings(out, episodes=2, seed=7, sim={"cameras": ",".join(CAMERAS)})
    summary = run_collection(config)
    assert summary.total_in_store == 2
    return out


@pytest.fixture(autouse=True)
def offline_lerobot(tmp_path, monkeypatch):
    """Never the Hub; the `datasets` cache of the parquet files in tmp_path, not in ~/.cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


def load(repo_id, root):
    """The dataset as lerobot reads it: from the local folder alone (the Hub is off)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(repo_id, root=root)


def monitored_store(path, lengths=(12, 9), size=16):
    """A format-4 store with a monitor, written by SALUS's own writer: per-step `intervention` and
    `actor` arrays with every intervention kind and both actors, deterministic smooth images."""
    writer = EpisodeWriter.create(path, horizons=(10,), cameras=("front",), image_size=size, ensemble_size=2,
                                  base_seed=40, policy="test", sim_config={"control_hz": 30.0},
                                  monitor={"horizons": [10], "threshold": 0.5, "run": "test"})
    kinds = len(INTERVENTION_KINDS)
    for episode_id, length in enumerate(lengths):
        t = np.arange(length, dtype=np.float32)
        yy, xx = np.mgrid[0:size, 0:size]
        images = np.stack([(xx * 7 + yy * 3 + step * 11 + channel * 40 + episode_id * 5) % 256
                           for step in range(length) for channel in range(3)]).astype(np.uint8)
        intervention = ((np.arange(length) + episode_id) % kinds).astype(np.uint8)
        writer.write(EpisodeRecord(
            episode_id=episode_id, seed=40 + episode_id,
            images=images.reshape(length, 1, 3, size, size),
            states=np.stack([np.sin(t / 4 + k) for k in range(8)], axis=1).astype(np.float32),
            actions=np.stack([np.cos(t / 5 + k) for k in range(7)], axis=1).astype(np.float32),
            member_actions=np.zeros((length, 2, 7), dtype=np.float32),
            signals=np.zeros((length, 6), dtype=np.float32),
            failure_type=4 if episode_id == 0 else -1, failure_step=length - 1,
            monitor_probabilities=np.zeros((length, 1, 4), dtype=np.float32),
            alarm=(intervention > 0).astype(np.uint8), intervention=intervention,
            actor=(intervention == INTERVENTION_KINDS.index("handover")).astype(np.uint8),
            interventions=[{"step": 1, "kind": "slow", "steps": 1}],
        ), durable=False)
    writer.close()
    return path


def assert_same_frames(dataset, store, exact_images=True):
    """Every frame of every episode: lerobot's decoded values against the store's arrays."""
    assert dataset.num_episodes == len(store)
    lengths = [m.episode_length for m in store.metas()]
    assert list(dataset.meta.episodes["length"]) == lengths
    assert len(dataset) == sum(lengths)
    index = 0
    for position, episode in enumerate(store):
        images = episode.images  # (T, C, 3, S, S) uint8
        has_monitor = "intervention" in episode.array_names
        intervention = episode.array("intervention")[:] if has_monitor else np.zeros(len(images), np.uint8)
        actor = episode.array("actor")[:] if has_monitor else np.zeros(len(images), np.uint8)
        for t in range(len(images)):
            item = dataset[index]
            assert int(item["episode_index"]) == position and int(item["frame_index"]) == t
            assert float(item["timestamp"]) == pytest.approx(t / 30, abs=1e-6)
            assert item["task"] == INSTRUCTION
            np.testing.assert_array_equal(item["observation.state"].numpy(), episode.states[t])
            np.testing.assert_array_equal(item["action"].numpy(), episode.actions[t])
            assert bool(item["intervention"]) == bool(intervention[t] != 0)
            assert int(item["intervention_kind"]) == int(intervention[t])
            assert int(item["actor"]) == int(actor[t])
            for c, camera in enumerate(store.cameras):
                decoded = item[f"observation.images.{camera}"].numpy()  # (3, S, S) float in [0, 1]
                assert decoded.shape == images[t, c].shape
                pixels = np.round(decoded * 255).astype(np.int16)
                if exact_images:
                    np.testing.assert_array_equal(pixels, images[t, c])
                else:
                    assert np.abs(pixels - images[t, c]).mean() < 8, (position, t, camera)
            index += 1


def test_a_collection_round_trips_through_lerobot(collected, tmp_path):
    events = []
    summary = export_lerobot(collected, tmp_path / "dataset", sink=events.append)
    store = EpisodeStore.open(collected)
    assert summary.episodes == 2 and summary.total_episodes == 2 and not summary.stopped
    assert summary.frames == sum(m.episode_length for m in store.metas())
    assert summary.repo_id == repo_id_for(collected) == "salus/store"
    assert [e.done for e in events if isinstance(e, ProgressUpdate)] == [1, 2]
    dataset = load(summary.repo_id, summary.out)
    assert dataset.fps == 30
    features = dataset.features
    for camera in CAMERAS:
        assert features[f"observation.images.{camera}"]["dtype"] == "image"
        assert tuple(features[f"observation.images.{camera}"]["shape"]) == (64, 64, 3)
    assert features["observation.state"]["dtype"] == "float32" and tuple(features["observation.state"]["shape"]) == (8,)
    assert features["action"]["dtype"] == "float32" and tuple(features["action"]["shape"]) == (7,)
    assert features["intervention"]["dtype"] == "bool" and features["actor"]["dtype"] == "int64"
    assert list(dataset.meta.tasks.index) == [INSTRUCTION]
    assert_same_frames(dataset, store)
    sidecar = json.loads((tmp_path / "dataset" / SIDECAR).read_text())
    assert [e["seed"] for e in sidecar["episodes"]] == [m.seed for m in store.metas()] == [7, 8]
    assert [e["failure_type"] for e in sidecar["episodes"]] == [m.failure_type for m in store.metas()]
    assert all(e["intervention_steps"] == 0 and e["expert_steps"] == 0 for e in sidecar["episodes"])
    assert not list((tmp_path / "dataset").parent.glob(".salus-creating-*"))  # the build folder is gone
    assert not (tmp_path / "dataset" / "images").exists()  # lerobot's PNG staging folder, emptied


def test_videos_decode_close_to_the_recorded_frames(collected, tmp_path):
    summary = export_lerobot(collected, tmp_path / "dataset", videos=True)
    dataset = load(summary.repo_id, summary.out)
    assert dataset.features["observation.images.front"]["dtype"] == "video"
    assert sorted(p.name for p in (tmp_path / "dataset" / "videos").iterdir()) == [
        f"observation.images.{camera}" for camera in CAMERAS]
    assert_same_frames(dataset, EpisodeStore.open(collected), exact_images=False)


def test_a_monitored_store_keeps_interventions_and_actors(tmp_path):
    store_path = monitored_store(tmp_path / "monitored")
    summary = export_lerobot(store_path, tmp_path / "dataset")
    store = EpisodeStore.open(store_path)
    assert summary.episodes == 2 and summary.frames == 21
    dataset = load(summary.repo_id, summary.out)
    assert_same_frames(dataset, store)
    kinds = dataset.hf_dataset["intervention_kind"]
    assert sorted(set(int(k) for k in kinds)) == list(range(len(INTERVENTION_KINDS)))
    assert {int(a) for a in dataset.hf_dataset["actor"]} == {0, 1}
    sidecar = json.loads((tmp_path / "dataset" / SIDECAR).read_text())
    first = sidecar["episodes"][0]
    assert first["outcome"] == "stopped" and first["interventions"] == [{"step": 1, "kind": "slow", "steps": 1}]
    assert first["intervention_steps"] == int(np.count_nonzero(store.episode(0).array("intervention")[:]))
    assert sidecar["intervention_kinds"] == list(INTERVENTION_KINDS) and sidecar["actors"] == ["policy", "expert"]


def test_a_stop_request_keeps_a_valid_shorter_dataset(tmp_path):
    store_path = monitored_store(tmp_path / "monitored")
    stop = threading.Event()

    def sink(event):
        if isinstance(event, ProgressUpdate):
            stop.set()  # after the first episode

    summary = export_lerobot(store_path, tmp_path / "dataset", sink=sink, stop=stop)
    assert summary.stopped and summary.episodes == 1 and summary.total_episodes == 2 and summary.frames == 12
    dataset = load(summary.repo_id, summary.out)
    assert dataset.num_episodes == 1 and len(dataset) == 12


def test_user_mistakes_are_one_line_and_exit_2(collected, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    (tmp_path / "file").write_text("x")
    cases = [
        ([str(collected), str(full)], "already exists and is not empty"),
        ([str(collected), str(tmp_path / "file")], "is a file"),
        ([str(collected), str(collected / "inside")], "outside the store"),
        ([str(tmp_path / "missing"), str(tmp_path / "new")], "no such store"),
    ]
    for args, expected in cases:
        code = main(["--log", str(tmp_path / "session.log"), "export", "--format", "lerobot", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == EXIT_USER_ERROR, (args, err)
        assert len(err) == 1 and err[0].startswith("salus: error:") and expected in err[0], (args, err)
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".salus-creating-*"))
    with pytest.raises(StoreError, match="unknown export format 'rlds'"):
        export_store("rlds", collected, tmp_path / "out")


def test_the_command_exports_into_an_empty_folder(collected, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    code = main(["--log", str(tmp_path / "session.log"), "export", str(collected), str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "exported 2 episodes" in printed and "LeRobotDataset('salus/store'" in printed
    assert load("salus/store", out).num_episodes == 2
