"""Zarr episode store: layout, atomic episodes, resume ids, horizon labels, verify, bad stores."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from salus_engine.store import EpisodeRecord, EpisodeStore, EpisodeWriter, StoreError, make_horizon_labels
from salus_engine.store.verify import verify_store

HORIZONS = (6, 10, 15, 20)
ROOT = Path(__file__).resolve().parents[1]


def record(episode_id, length=12, failure_type=0, failure_step=None, members=3):
    """A deterministic episode (ramps, not random) of the store's shapes, for storage tests only."""
    t = np.arange(length, dtype=np.float32)
    failure_step = length - 1 if failure_step is None else failure_step
    actions = np.stack([np.sin(t / 3 + k) for k in range(7)], axis=1).astype(np.float32)
    member_actions = np.stack([actions + 0.01 * (m + 1) * np.cos(t)[:, None] for m in range(members)], axis=1)
    return EpisodeRecord(
        episode_id=episode_id, seed=100 + episode_id,
        images=np.broadcast_to((t % 255).astype(np.uint8)[:, None, None, None, None], (length, 1, 3, 8, 8)).copy(),
        states=np.tile(t[:, None], (1, 8)).astype(np.float32),
        actions=actions, member_actions=member_actions.astype(np.float32),
        signals=np.stack([np.cos(t + k) for k in range(6)], axis=1).astype(np.float32),
        failure_type=failure_type, failure_step=failure_step,
        evidence={"max_contact_force_n": 80.0} if failure_type >= 0 else {"cube_speed_mps": 0.01},
    )


def new_writer(path, members=3):
    return EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=8, ensemble_size=members,
                                base_seed=100, policy="test", sim_config={"collision_force_n": 30.0})


def test_horizon_labels_from_failure_step():
    labels = make_horizon_labels(failure_type=1, failure_step=30, length=31, horizons=HORIZONS)
    assert labels.shape == (31, 4, 4) and labels.dtype == np.uint8
    # Only the drop column (k=1) is ever set.
    assert labels[:, :, [0, 2, 3]].sum() == 0
    # horizon 6: steps 24..30 are within 6 steps of step 30; step 23 is 7 steps away.
    assert labels[24:, 0, 1].all() and not labels[:24, 0, 1].any()
    # horizon 20: steps 10..30.
    assert labels[10:, 3, 1].all() and not labels[:10, 3, 1].any()
    # a longer horizon never has fewer positives.
    assert np.all(np.diff(labels[:, :, 1].astype(int), axis=1) >= 0)


def test_horizon_labels_success_and_errors():
    assert make_horizon_labels(-1, 5, 10, HORIZONS).sum() == 0
    assert make_horizon_labels(4, 5, 10, HORIZONS).sum() == 0  # stopped by the monitor: no failure observed
    with pytest.raises(ValueError):
        make_horizon_labels(5, 5, 10, HORIZONS)
    with pytest.raises(ValueError):
        make_horizon_labels(0, 10, 10, HORIZONS)


def test_write_read_round_trip(tmp_path):
    writer = new_writer(tmp_path / "c")
    writer.write(record(0, failure_type=-1))
    writer.write(record(1, length=7, failure_type=2, failure_step=6))
    store = EpisodeStore.open(tmp_path / "c")
    assert len(store) == 2 and store.horizons == HORIZONS
    ep = store.episode(1)
    assert ep.meta.failure_type == 2 and ep.meta.failure_step == 6 and ep.meta.episode_length == 7
    assert ep.meta.seed == 101 and not ep.meta.success
    np.testing.assert_array_equal(ep.signals, record(1, length=7).signals)
    assert ep.member_actions.shape == (7, 3, 7) and ep.images.shape == (7, 1, 3, 8, 8)
    assert ep.frame(3).shape == (8, 8, 3) and ep.frame(3)[0, 0, 0] == 3
    np.testing.assert_array_equal(ep.horizon_labels, make_horizon_labels(2, 6, 7, HORIZONS))
    assert store.episode(0).meta.success


def test_listing_and_bulk_reads_agree_with_the_episodes(tmp_path):
    writer = new_writer(tmp_path / "c")
    for i in range(4):
        writer.write(record(i, length=5 + i, failure_type=-1 if i % 2 else 1, failure_step=4 + i), durable=False)
    writer.close()
    store = EpisodeStore.open(tmp_path / "c")
    assert EpisodeStore.open(tmp_path / "c").listing() == store.metas()
    read = store.read_arrays(("signals", "actions"), [3, 1])
    assert [sorted(r) for r in read] == [["actions", "signals"]] * 2
    np.testing.assert_array_equal(read[0]["signals"], store.episode(3).signals)
    np.testing.assert_array_equal(read[1]["actions"], store.episode(1).actions)
    assert len(store.read_arrays(("signals",))) == 4
    meta_path = tmp_path / "c" / "episodes" / "000002" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["failure_step"] = "late"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"episode 2 is damaged \(attribute failure_step is 'late'"):
        EpisodeStore.open(tmp_path / "c").listing()


def test_plain_zarr_reads_the_documented_layout(tmp_path):
    new_writer(tmp_path / "c").write(record(0))
    root = zarr.open_group(str(tmp_path / "c"), mode="r")
    assert root.attrs["format"] == "salus-episodes" and list(root.attrs["horizons"]) == list(HORIZONS)
    ep = root["episodes/000000"]
    assert ep.attrs["failure_type"] == 0 and ep["signals"].shape == (12, 6)
    # strings are JSON attributes, never fixed-length UTF-32 arrays
    assert isinstance(ep.attrs["timestamp"], str)
    assert all(str(ep[name].dtype) in ("uint8", "float32") for name in ep.array_keys())


def test_partial_episode_is_invisible_and_resume_continues(tmp_path):
    path = tmp_path / "c"
    writer = new_writer(path)
    writer.write(record(0))
    writer.write(record(1))
    # A crash while writing episode 2 leaves only staging data behind.
    staged = zarr.open_group(str(path / ".staging" / "000002"), mode="w", zarr_format=3)
    staged.create_array("signals", shape=(3, 6), dtype="float32")
    assert len(EpisodeStore.open(path)) == 2
    assert any("partial" in w for w in verify_store(path).warnings)
    writer.close()
    resumed = EpisodeWriter.open_for_resume(path)
    assert resumed.next_episode_id == 2 and resumed.seed_for(2) == 102
    assert not (path / ".staging").exists()
    resumed.write(record(2))
    assert EpisodeStore.open(path).episode_ids == [0, 1, 2]
    with pytest.raises(ValueError, match="out of order"):
        resumed.write(record(5))


def test_write_is_atomic_under_sigkill(tmp_path):
    """A writer process killed with SIGKILL while writing leaves only complete episodes."""
    path = tmp_path / "c"
    new_writer(path)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_store import record
        from salus_engine.store import EpisodeWriter
        import salus_engine.store.writer as w
        writer = EpisodeWriter.open_for_resume({str(path)!r})
        writer.write(record(0))
        def die(p):
            os.kill(os.getpid(), signal.SIGKILL)
        w._fsync_tree = die
        writer.write(record(1))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT))
    assert proc.returncode == -9
    store = EpisodeStore.open(path)
    assert store.episode_ids == [0]
    assert EpisodeWriter.open_for_resume(path).next_episode_id == 1


def test_create_refuses_non_empty_folder(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="--resume"):
        new_writer(tmp_path / "c")


def test_bad_stores_give_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        EpisodeStore.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a Zarr v3 store"):
        EpisodeStore.open(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "foreign"), mode="w", zarr_format=3).attrs["x"] = 1
    with pytest.raises(StoreError, match="not a SALUS episode store"):
        EpisodeStore.open(tmp_path / "foreign")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="damaged"):
        EpisodeStore.open(tmp_path / "broken")
    for err in (StoreError,):
        assert "\n" not in str(err("x"))


def test_verify_passes_then_catches_tampering(tmp_path):
    path = tmp_path / "c"
    writer = new_writer(path)
    writer.write(record(0, failure_type=-1))
    writer.write(record(1, failure_type=0, failure_step=9))
    report = verify_store(path)
    assert report.ok, report.problems
    assert report.outcomes == {"success": 1, "collision": 1}
    # a label that contradicts its evidence
    meta_path = path / "episodes" / "000001" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["evidence"]["max_contact_force_n"] = 5.0
    meta["attributes"]["failure_step"] = 4
    meta_path.write_text(json.dumps(meta))
    problems = " ".join(verify_store(path).problems)
    assert "below" in problems and "horizon_labels disagree" in problems


def test_verify_flags_frozen_actions(tmp_path):
    path = tmp_path / "c"
    rec = record(0)
    rec.actions[:] = 0.5
    new_writer(path).write(rec)
    assert any("frozen" in p for p in verify_store(path).problems)


def test_second_writer_is_refused_while_the_first_is_open(tmp_path):
    path = tmp_path / "c"
    first = new_writer(path)
    first.write(record(0))
    with pytest.raises(StoreError, match="another collection"):
        EpisodeWriter.open_for_resume(path)
    first.close()
    assert EpisodeWriter.open_for_resume(path).next_episode_id == 1
