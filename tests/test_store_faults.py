"""A damaged store, a killed creation, a bad --out, a full disk, two creators at once: every case ends
in a one-line `StoreError` naming the episode or path (never a traceback, never silently used data),
and `salus verify`, the reader, the predictor's dataset loading and --resume agree on what is damage.

Real stores written by the real `EpisodeWriter`; damage is done to the files as a disk or a person would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr

from salus_engine.errors import SalusError
from salus_engine.predictor.dataset import load_signal_data
from salus_engine.signals import SIGNAL_NAMES
from salus_engine.store import EpisodeStore, EpisodeWriter, StoreError, make_horizon_labels
from salus_engine.store.layout import CREATING_PREFIX, FORMAT_VERSION
from salus_engine.store.verify import verify_store
from tests.test_store import HORIZONS, new_writer, record

ROOT = Path(__file__).resolve().parents[1]


def one_line(err: BaseException) -> str:
    text = str(err)
    assert isinstance(err, SalusError) and "\n" not in text and text, repr(text)
    return text


def write_store(path: Path, episodes: int = 4) -> Path:
    """`episodes` episodes: a success first, then collisions at their last step."""
    writer = new_writer(path)
    for i in range(episodes):
        writer.write(record(i, length=23, failure_type=-1 if i == 0 else 0), durable=False)
    writer.close()
    return path


def episode_dir(path: Path, episode_id: int) -> Path:
    return path / "episodes" / f"{episode_id:06d}"


def set_attr(path: Path, which: int, **values) -> None:
    meta_path = episode_dir(path, which) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"].update(values)
    meta_path.write_text(json.dumps(meta))


def refused_everywhere(path: Path, episode_id: int, *expected: str) -> None:
    """verify reports it, dataset loading and --resume refuse it, each in one line naming the episode."""
    report = verify_store(path)
    assert not report.ok
    problems = " | ".join(report.problems)
    assert f"episode {episode_id}" in problems and all(e in problems for e in expected), problems
    with pytest.raises(StoreError) as loading:
        load_signal_data(path)
    text = one_line(loading.value)
    assert f"episode {episode_id}" in text and "salus verify" in text, text
    with pytest.raises(StoreError) as resuming:
        EpisodeWriter.open_for_resume(path)
    text = one_line(resuming.value)
    assert f"episode {episode_id}" in text and "salus verify" in text, text


# ---------------------------------------------------------------- checksums and damaged chunks


def test_new_stores_have_checksums_and_verify_reads_them(tmp_path):
    path = write_store(tmp_path / "s")
    assert EpisodeStore.open(path).attrs["format_version"] == FORMAT_VERSION == 4
    meta = json.loads((episode_dir(path, 1) / "signals" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][-1] == "crc32c"
    # every chunk is stored, also an all-zero one (the success episode's horizon labels)
    assert (episode_dir(path, 0) / "horizon_labels" / "c" / "0" / "0" / "0").is_file()
    report = verify_store(path)
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    assert len(load_signal_data(path).episodes) == 4


def resume_refuses(path: Path, *expected: str) -> None:
    """--resume refuses a store with a damaged chunk in one line, and appends nothing."""
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    with pytest.raises(StoreError) as resuming:
        EpisodeWriter.open_for_resume(path)
    text = one_line(resuming.value)
    assert all(e in text for e in expected) and "salus verify" in text, text
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before


def test_random_bytes_in_a_signals_chunk_are_caught_by_the_checksum(tmp_path):
    path = write_store(tmp_path / "s")
    chunk = episode_dir(path, 2) / "signals" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[16:48] = np.random.default_rng(0).integers(0, 256, 32, dtype=np.uint8).tobytes()
    chunk.write_bytes(bytes(data))
    problems = " | ".join(verify_store(path).problems)
    assert "episode 2: array 'signals' chunk c/0/0 is damaged (checksum mismatch" in problems, problems
    with pytest.raises(StoreError) as loading:
        load_signal_data(path)
    assert "episode 2" in one_line(loading.value) and "signals" in str(loading.value)
    episode = EpisodeStore.open(path).episode(2)
    with pytest.raises(StoreError, match="episode 2: array 'signals' is damaged"):
        episode.signals
    resume_refuses(path, "episode 2: array 'signals' chunk c/0/0 is damaged (checksum mismatch)")


def test_truncated_chunk_is_a_problem_not_a_crash(tmp_path):
    path = write_store(tmp_path / "s")
    os.truncate(episode_dir(path, 3) / "signals" / "c" / "0" / "0", 10)
    report = verify_store(path)
    assert any("episode 3: array 'signals' chunk c/0/0 is damaged" in p for p in report.problems), report.problems
    with pytest.raises(StoreError, match="episode 3"):
        load_signal_data(path)
    resume_refuses(path, "episode 3: array 'signals' chunk c/0/0 is damaged")


def test_truncated_image_chunk_fails_verify_and_the_player_read(tmp_path):
    path = write_store(tmp_path / "s")
    # images are chunked by 10 steps: chunk 1 holds steps 10..19
    os.truncate(episode_dir(path, 1) / "images" / "c" / "1" / "0" / "0" / "0" / "0", 20)
    report = verify_store(path)
    assert any("episode 1: array 'images' chunk c/1/0/0/0/0 is damaged" in p for p in report.problems), report.problems
    episode = EpisodeStore.open(path).episode(1)
    assert episode.frame(3).shape == (8, 8, 3)  # an intact chunk still reads
    with pytest.raises(StoreError) as reading:
        episode.frame(12)
    assert "episode 1: array 'images' is damaged" in one_line(reading.value)
    with pytest.raises(StoreError):
        episode.array("images")[10:20]
    # the signals are intact, so training data loads; --resume reads the raw chunks, images too
    assert len(load_signal_data(path).episodes) == 4
    resume_refuses(path, "episode 1: array 'images' chunk c/1/0/0/0/0 is damaged")


def test_missing_chunk_is_damage_not_zeros(tmp_path):
    path = write_store(tmp_path / "s")
    (episode_dir(path, 2) / "actions" / "c" / "0" / "0").unlink()
    problems = " | ".join(verify_store(path).problems)
    assert "episode 2: array 'actions' chunk c/0/0 is damaged (a chunk file is missing)" in problems, problems
    with pytest.raises(StoreError, match="episode 2"):
        EpisodeStore.open(path).episode(2).actions
    resume_refuses(path, "episode 2: array 'actions' chunk c/0/0 is missing")


def test_store_without_checksums_is_read_with_a_warning(tmp_path):
    """A format-version-1 store (no crc32c, chunks equal to the fill value left out) still works."""
    path = tmp_path / "v1"
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"format": "salus-episodes", "format_version": 1, "horizons": list(HORIZONS),
                       "failure_types": ["collision", "drop", "miss", "timeout"],
                       "signal_names": list(SIGNAL_NAMES),
                       "cameras": ["front"], "image_size": 8, "ensemble_size": 3, "action_dim": 7, "state_dim": 8,
                       "base_seed": 100, "policy": "test", "sim_config": {"collision_force_n": 30.0},
                       "created": "2026-01-01T00:00:00+00:00"})
    episodes = root.create_group("episodes")
    for i in range(2):
        rec = record(i, failure_type=-1 if i == 0 else 0)
        group = episodes.create_group(f"{i:06d}")
        arrays = {"images": rec.images, "states": rec.states, "actions": rec.actions,
                  "member_actions": rec.member_actions, "signals": rec.signals,
                  "horizon_labels": make_horizon_labels(rec.failure_type, rec.failure_step, rec.length, HORIZONS)}
        for name, data in arrays.items():
            group.create_array(name, data=data)
        group.attrs.update({"episode_id": i, "seed": 100 + i, "success": i == 0, "failure_type": rec.failure_type,
                            "failure_step": rec.failure_step, "episode_length": rec.length,
                            "timestamp": "2026-01-01T00:00:00+00:00", "evidence": rec.evidence})
    assert not (path / "episodes" / "000000" / "horizon_labels" / "c").exists()  # all zero: not stored
    report = verify_store(path)
    assert report.ok, report.problems
    assert any("no checksums" in w for w in report.warnings), report.warnings
    assert len(load_signal_data(path).episodes) == 2
    writer = EpisodeWriter.open_for_resume(path)
    assert writer.next_episode_id == 2
    writer.write(record(2))
    writer.close()
    assert verify_store(path).ok


# ---------------------------------------------------------------- metadata


@pytest.mark.parametrize("values, expected", [
    ({"failure_type": "collision"}, "failure_type is 'collision'"),
    ({"failure_step": None}, "failure_step is null"),
    ({"success": 1}, "success is 1"),
    ({"episode_length": -3}, "episode_length is -3"),
    ({"episode_length": 10**12}, "episode_length is 1000000000000, but the arrays hold 23 steps"),
    ({"failure_step": 23}, "failure_step is 23"),
    ({"failure_type": 7}, "failure_type is 7"),
    ({"episode_id": 5}, "episode_id is 5"),
])
def test_wrong_typed_or_impossible_metadata_is_refused_everywhere(tmp_path, values, expected):
    path = write_store(tmp_path / "s")
    set_attr(path, 2, **values)
    refused_everywhere(path, 2, expected)
    store = EpisodeStore.open(path)
    with pytest.raises(StoreError) as reading:
        store.meta(2)
    assert "episode 2" in one_line(reading.value)
    assert store.meta(1).episode_length == 23  # the other episodes still read


def test_missing_attribute_is_refused(tmp_path):
    path = write_store(tmp_path / "s")
    meta_path = episode_dir(path, 1) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["failure_step"]
    meta_path.write_text(json.dumps(meta))
    refused_everywhere(path, 1, "failure_step missing")


def test_array_shape_that_disagrees_with_the_length_is_refused(tmp_path):
    path = write_store(tmp_path / "s")
    shutil.rmtree(episode_dir(path, 3) / "actions")
    refused_everywhere(path, 3, "array 'actions' is missing")


def test_wrong_typed_root_attribute_is_one_line(tmp_path):
    path = write_store(tmp_path / "s")
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["image_size"] = "64"
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="image_size"):
        EpisodeStore.open(path)
    assert any("image_size" in p for p in verify_store(path).problems)


# ---------------------------------------------------------------- missing episodes and folders


def test_missing_episode_is_refused_and_counts_stay_true(tmp_path):
    path = write_store(tmp_path / "s", episodes=5)
    shutil.rmtree(episode_dir(path, 2))
    refused_everywhere(path, 2, "episode 2 is missing")
    assert len(EpisodeStore.open(path)) == 4


def test_episode_folder_without_zarr_json_is_refused(tmp_path):
    path = write_store(tmp_path / "s", episodes=4)
    (episode_dir(path, 3) / "zarr.json").unlink()
    refused_everywhere(path, 3, "without zarr.json")
    # and one in the middle, which also leaves a gap in the complete ids
    path = write_store(tmp_path / "t", episodes=4)
    (episode_dir(path, 1) / "zarr.json").unlink()
    refused_everywhere(path, 1, "without zarr.json")


def test_resume_continues_an_intact_store_with_true_counts(tmp_path):
    path = write_store(tmp_path / "s", episodes=3)
    writer = EpisodeWriter.open_for_resume(path)
    assert writer.next_episode_id == 3 == len(EpisodeStore.open(path))
    writer.close()


# ---------------------------------------------------------------- creation


KILL_DURING_CREATE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import zarr.storage
from tests.test_store import new_writer
kill_at = {kill_at!r}
writes = []
original_set = zarr.storage.LocalStore.set
async def set_then_die(self, key, value, *args, **kwargs):
    await original_set(self, key, value, *args, **kwargs)
    if key.endswith("zarr.json"):
        writes.append(key)
        if kill_at == len(writes):
            os.kill(os.getpid(), signal.SIGKILL)
zarr.storage.LocalStore.set = set_then_die
if kill_at == "rename":
    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)
    os.rename = die
new_writer({path!r})
"""


@pytest.mark.parametrize("kill_at", [1, 2, "rename"])
def test_a_kill_during_creation_leaves_no_half_created_store(tmp_path, kill_at):
    path = tmp_path / "s"
    script = KILL_DURING_CREATE.format(root=str(ROOT), kill_at=kill_at, path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT))
    assert proc.returncode == -9
    # either nothing or a complete store: here nothing, since the rename never happened
    assert not path.exists()
    assert not EpisodeStore.exists(path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(CREATING_PREFIX)]
    assert len(leftovers) == 1  # the killed creation's build folder
    # a retry (what --resume does for an absent store) creates it and removes the leftover
    writer = new_writer(path)
    writer.write(record(0))
    writer.close()
    assert EpisodeStore.open(path).attrs["format"] == "salus-episodes"
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_a_half_created_store_of_an_older_salus_is_one_line(tmp_path):
    """Older SALUS wrote the root zarr.json before its attributes; a kill in between left this."""
    path = tmp_path / "s"
    zarr.open_group(str(path), mode="w", zarr_format=3)
    for call in (EpisodeStore.open, EpisodeWriter.open_for_resume):
        with pytest.raises(StoreError) as refused:
            call(path)
        assert "creation by an older SALUS was interrupted" in one_line(refused.value)
    assert "interrupted" in " ".join(verify_store(path).problems)


def test_a_live_creation_is_not_removed_as_a_leftover(tmp_path):
    """The build folder of a creation in progress holds an flock; only abandoned ones are removed."""
    import fcntl

    build = tmp_path / f"{CREATING_PREFIX}s-live"
    build.mkdir()
    fd = os.open(build, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.test_store import new_writer; new_writer({str(tmp_path / 's')!r}).close()"
        subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), check=True)
        assert build.exists() and (tmp_path / "s" / "zarr.json").is_file()
    finally:
        os.close(fd)


def test_simultaneous_creates_give_one_store_and_one_line_errors(tmp_path):
    for round_ in range(12):
        path = tmp_path / f"s{round_}"
        barrier = threading.Barrier(3)
        results: list[object] = []

        def create():
            barrier.wait()
            try:
                results.append(new_writer(path))
            except Exception as err:  # noqa: BLE001 - the test sorts them below
                results.append(err)

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writers = [r for r in results if isinstance(r, EpisodeWriter)]
        errors = [r for r in results if not isinstance(r, EpisodeWriter)]
        assert len(writers) == 1, results
        for err in errors:
            assert isinstance(err, StoreError) and "already exists" in one_line(err), repr(err)
        writers[0].write(record(0))
        writers[0].close()
        assert EpisodeStore.open(path).episode_ids == [0]
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(CREATING_PREFIX)]


def test_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for out, expected in ((a_file, "is a file"), (a_file / "store", "notes.txt is a file"),
                          (a_file / "deeper" / "store", "notes.txt is a file")):
        with pytest.raises(StoreError) as creating:
            new_writer(out)
        assert expected in one_line(creating.value), str(creating.value)
        with pytest.raises(StoreError):
            EpisodeWriter.check_new_path(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_unwritable_folder_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="not writable|Permission denied"):
            new_writer(locked / "store")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- disk full


DISK_FULL = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from tests.test_store import new_writer, record
from salus_engine.store import StoreError
writer = new_writer({path!r})
episode = 0
try:
    while True:
        rec = record(episode, length=40)
        # incompressible images, so that the small disk fills within a few episodes
        rec.images[...] = np.random.default_rng(episode).integers(0, 256, rec.images.shape, dtype=np.uint8)
        writer.write(rec)
        episode += 1
except StoreError as err:
    print("ERROR", err)
"""


def test_disk_full_ends_in_one_line_and_the_store_stays_valid(tmp_path):
    """A real full disk: a 256 KiB tmpfs mounted in a private mount namespace (`unshare`)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mount = tmp_path / "disk"
    mount.mkdir()
    path = mount / "s"
    script = DISK_FULL.format(root=str(ROOT), path=str(path))
    # the namespace sees the tmpfs; the script copies the store out before the namespace ends
    shell = (f"mount -t tmpfs -o size=256k tmpfs {mount} && {sys.executable} -c \"$SCRIPT\" && "
             f"cp -a {path} {tmp_path / 'copy'}")
    flags = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    proc = subprocess.run(["unshare", *flags, "sh", "-c", shell], cwd=str(ROOT), capture_output=True, text=True,
                          env={**os.environ, "SCRIPT": script})
    if proc.returncode != 0 and "mount" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
    assert "disk full at episode" in error and "free space and continue with --resume" in error, error
    written = int(error.split("disk full at episode ")[1].split(":")[0])
    assert written >= 1
    copy = tmp_path / "copy"
    assert not (copy / ".staging").exists()
    store = EpisodeStore.open(copy)
    assert store.episode_ids == list(range(written))
    assert verify_store(copy).ok, verify_store(copy).problems
    writer = EpisodeWriter.open_for_resume(copy)
    assert writer.next_episode_id == written
    writer.write(record(written))
    writer.close()


# ---------------------------------------------------------------- a refused setting creates no store


@pytest.mark.slow
def test_a_setting_the_simulator_refuses_creates_no_store(tiny_collect_config):
    """The real ensemble and simulator: the store is created only after both accepted the settings."""
    from salus_engine.jobs import run_collection

    config = tiny_collect_config
    # a value the settings layer would refuse, set past it, so that the simulator is the one to refuse it
    object.__setattr__(config.sim, "max_steps", 0)
    with pytest.raises(SalusError) as refused:
        run_collection(config)
    assert "max_steps" in one_line(refused.value)
    out = Path(config.out)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(CREATING_PREFIX)]


def test_collection_into_a_file_fails_before_loading_the_ensemble(tiny_collect_config, tmp_path):
    from salus_engine.jobs import run_collection

    a_file = tmp_path / "file"
    a_file.write_text("x")
    config = tiny_collect_config
    config.out = str(a_file / "store")
    config.policy.path = str(tmp_path / "no-such-policy")  # would fail too, but later
    with pytest.raises(StoreError, match="is a file"):
        run_collection(config)
