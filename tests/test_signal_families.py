"""Signal families (store format 3): each family's columns on hand-made chunk queries with known
answers, the settings that choose them, the members' written-out sampling loop against lerobot's
own, the store's new arrays, and a tiny real collection that records them.

The hand-made inputs are `ChunkQuery` values as the ensemble gives them; the rest runs the real
embedded ensemble, the real simulator and the real store at tiny settings.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
import zarr

from salus_engine.config import ConfigError, PolicyConfig, SimConfig, load_collect_config
from salus_engine.policy.ensemble import ChunkQuery, PolicyEnsemble, _MemberChunk
from salus_engine.signal_families import (
    ACTION_JERK,
    CHUNK_CONSISTENCY,
    CHUNK_ENTROPY,
    COLLECTED_FAMILIES,
    DEFAULT_FAMILIES,
    FAMILY_COLUMNS,
    FLOW_DISAGREEMENT,
    HIDDEN_DIM,
    HIDDEN_STATE,
    JERK_WINDOW,
    FamilyExtractor,
    FamilyLayout,
    hidden_projection,
    parse_families,
)
from salus_engine.store import EpisodeStore, EpisodeWriter, StoreError
from salus_engine.store.verify import verify_store
from tests.conftest import tiny_flags, tiny_settings
from tests.test_store import HORIZONS, record

TINY_SIM = SimConfig(image_size=64, max_steps=30)


def extractor(*families: str, requery_every: int = 1, hidden_dim: int = 0, projection=None) -> FamilyExtractor:
    layout = FamilyLayout(families=tuple(families), hidden_dim=hidden_dim, projection=projection)
    return FamilyExtractor(layout, requery_every=requery_every)


def columns(features: np.ndarray, layout: FamilyLayout, family: str) -> dict[str, float]:
    names = layout.feature_names
    return {name: float(features[names.index(name)]) for name in FAMILY_COLUMNS[family]}


STILL = np.zeros(7, np.float32)


# ---------------------------------------------------------------- each family on known inputs


def test_chunk_consistency_compares_the_overlap_of_consecutive_chunks():
    """k = 1, L = 4: the previous chunk's steps 1..3 against the new chunk's 0..2. Member 0 moved on
    exactly as planned (no difference); member 1 differs by (3, 0), (0, 0), (0, 4) on the overlap."""
    ex = extractor(CHUNK_CONSISTENCY, requery_every=1)
    plan = np.array([[0, 0], [1, 0], [2, 0], [3, 0]], np.float32)
    first = ChunkQuery(chunks=np.stack([plan, plan]))
    features, hidden = ex.update(STILL, first)
    assert hidden is None and features.dtype == np.float32
    # zeros at the first query (nothing to compare); magnitude: norms 0, 1, 2, 3 per member
    np.testing.assert_allclose(features, [0, 0, 0, 0, 1.5], rtol=1e-6)
    member_0 = np.array([[1, 0], [2, 0], [3, 0], [3, 4]], np.float32)  # the plan shifted by one step
    member_1 = np.array([[4, 0], [2, 0], [3, 4], [0, 0]], np.float32)
    second = ChunkQuery(chunks=np.stack([member_0, member_1]))
    features, _ = ex.update(STILL, second)
    got = columns(features, ex.layout, CHUNK_CONSISTENCY)
    # L2 per member: 0 and (3 + 0 + 4) / 3; MSE per member: 0 and (9 + 16) / (3 steps * 2 dims)
    assert got["stac_l2_mean"] == pytest.approx(7 / 6) and got["stac_l2_max"] == pytest.approx(7 / 3)
    assert got["tce_mse_mean"] == pytest.approx(25 / 12) and got["tce_mse_max"] == pytest.approx(25 / 6)
    # ACM: norms 1, 2, 3, 5 and 4, 2, 5, 0 -> 22 / 8
    assert got["chunk_magnitude"] == pytest.approx(2.75)
    # held between re-queries, and back to zeros after a reset
    held, _ = ex.update(STILL, None)
    np.testing.assert_array_equal(held, features)
    ex.reset()
    features, _ = ex.update(STILL, second)
    np.testing.assert_allclose(features, [0, 0, 0, 0, 2.75], rtol=1e-6)


def test_chunk_consistency_uses_the_requery_interval_as_the_shift():
    """k = 2, L = 4: a chunk that continues the previous plan two steps on has no inconsistency; the
    same chunk compared at the wrong shift would."""
    ex = extractor(CHUNK_CONSISTENCY, requery_every=2)
    ramp = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # steps 0..5 of one plan
    ex.update(STILL, ChunkQuery(chunks=ramp[None, 0:4]))
    features, _ = ex.update(STILL, ChunkQuery(chunks=ramp[None, 2:6]))
    got = columns(features, ex.layout, CHUNK_CONSISTENCY)
    assert got["stac_l2_mean"] == got["stac_l2_max"] == got["tce_mse_mean"] == got["tce_mse_max"] == 0.0
    # shifted by one step, not k: every overlapping action differs by (1, 1, 1)
    ex.reset()
    ex.update(STILL, ChunkQuery(chunks=ramp[None, 0:4]))
    features, _ = ex.update(STILL, ChunkQuery(chunks=ramp[None, 1:5]))
    got = columns(features, ex.layout, CHUNK_CONSISTENCY)
    assert got["stac_l2_mean"] == pytest.approx(math.sqrt(3)) and got["tce_mse_max"] == pytest.approx(1.0)


def test_flow_disagreement_is_the_spread_of_the_velocities_across_members():
    """S = 3 steps, M = 2: member 1's velocity exceeds member 0's by 2 c_s everywhere, on top of an
    offset that varies over (L, A) but is shared by both: the spread across members is c_s."""
    spread = np.array([1.0, 2.0, 6.0])
    offset = np.arange(2 * 3, dtype=np.float64).reshape(2, 3)  # (L, A), the same for both members
    velocities = np.stack([np.stack([offset, offset + 2 * c]) for c in spread]).astype(np.float32)  # (S, M, L, A)
    ex = extractor(FLOW_DISAGREEMENT)
    features, _ = ex.update(STILL, ChunkQuery(chunks=np.zeros((2, 2, 7), np.float32), velocities=velocities))
    np.testing.assert_allclose(features, [3.0, 1.0, 6.0], rtol=1e-6)  # mean, first, last
    held, _ = ex.update(STILL, None)
    np.testing.assert_array_equal(held, features)
    # a query without the sampling loop's velocities keeps the last values
    kept, _ = ex.update(STILL, ChunkQuery(chunks=np.zeros((2, 2, 7), np.float32)))
    np.testing.assert_array_equal(kept, features)


def test_chunk_entropy_is_each_members_spread_over_the_extra_samples():
    """K = 2 samples: member 0's two chunks are equal, member 1's differ by 1.0 everywhere (std 0.5)."""
    base = np.linspace(-1, 1, 4 * 7, dtype=np.float32).reshape(4, 7)  # (L, A), varies over the chunk
    samples = np.stack([np.stack([base, base]), np.stack([base, base + 1.0])])  # (K, M, L, A)
    ex = extractor(CHUNK_ENTROPY)
    features, _ = ex.update(STILL, ChunkQuery(chunks=samples[0], entropy_samples=samples))
    np.testing.assert_allclose(features, [0.25, 0.5], rtol=1e-6)  # mean and max over members


def test_hidden_state_is_the_member_mean_stored_as_is_or_projected():
    narrow = extractor(HIDDEN_STATE, hidden_dim=4)
    embedding = np.array([[1.0, 2.0, -3.0, 0.5], [3.0, 0.0, -1.0, 0.5]], np.float32)  # (M, D)
    features, hidden = narrow.update(STILL, ChunkQuery(chunks=np.zeros((2, 3, 7), np.float32),
                                                       prefix_embedding=embedding))
    assert features.shape == (0,) and hidden.dtype == np.float16
    np.testing.assert_array_equal(hidden, np.array([2.0, 1.0, -2.0, 0.5], np.float16))
    held = narrow.update(STILL, None)[1]
    np.testing.assert_array_equal(held, hidden)
    # wider than 64: the fixed projection of seed 0 (the same matrix every time, stored in the store)
    assert hidden_projection(HIDDEN_DIM) is None
    projection = hidden_projection(100)
    assert projection.shape == (100, HIDDEN_DIM) and projection.dtype == np.float32
    np.testing.assert_array_equal(projection, hidden_projection(100))
    assert abs(float(projection.std()) - 1 / math.sqrt(HIDDEN_DIM)) < 0.01
    layout = FamilyLayout.build((HIDDEN_STATE,), 0, None, embedding_width=100)
    assert layout.hidden_dim == HIDDEN_DIM and layout.feature_names == []
    np.testing.assert_array_equal(layout.projection, projection)
    wide = FamilyExtractor(layout, requery_every=1)
    embedding = np.zeros((2, 100), np.float32)
    embedding[0, 7] = 4.0  # mean over the two members: 2 e_7
    _, hidden = wide.update(STILL, ChunkQuery(chunks=np.zeros((2, 3, 7), np.float32), prefix_embedding=embedding))
    assert hidden.shape == (HIDDEN_DIM,) and hidden.dtype == np.float16
    np.testing.assert_array_equal(hidden, (2.0 * projection[7]).astype(np.float16))
    wide.reset()
    np.testing.assert_array_equal(wide.update(STILL, None)[1], np.zeros(HIDDEN_DIM, np.float16))


def action(x: float = 0.0, rotation: float = 0.0, gripper: float = 1.0) -> np.ndarray:
    a = np.zeros(7, np.float32)
    a[0], a[4], a[6] = x, rotation, gripper
    return a


def test_action_jerk_columns_on_a_known_action_sequence():
    ex = extractor(ACTION_JERK)
    # jerk: x = 0, 0.1, 0.3, 0.3 -> second differences 0.1 and -0.2 from step 2 on
    rows = [ex.update(action(x), None)[0] for x in (0.0, 0.1, 0.3, 0.3)]
    jerk = [r[0] for r in rows]
    np.testing.assert_allclose(jerk, [0, 0, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(rows[3][1], (0.1 + 0.2) / 4, rtol=1e-5)  # jerk_mean: steps 0..3
    assert all(r[2] == 0 and r[3] == 0 for r in rows)  # no reversal, no gripper change

    ex.reset()
    # reversals: only between two values beyond the 0.05 deadband; rotation dims count, the gripper
    # does not (its sign changes are toggles)
    xs = (0.2, -0.2, 0.02, -0.2, 0.2)
    grippers = (1.0, 1.0, -1.0, -1.0, 1.0)
    rows = [ex.update(action(x, gripper=g), None)[0] for x, g in zip(xs, grippers)]
    assert [r[2] for r in rows] == [0, 1, 1, 1, 2]  # 0.2 -> -0.2 and -0.2 -> 0.2; 0.02 is in the deadband
    assert [r[3] for r in rows] == [0, 0, 1, 1, 2]
    features, _ = ex.update(action(0.2, rotation=0.1), None)
    features, _ = ex.update(action(0.2, rotation=-0.1), None)
    assert features[2] == 3  # the rotation dim's flip joins the two x flips

    ex.reset()
    # the window: a flip counts for JERK_WINDOW steps, then leaves it; jerk_mean forgets old jerks too
    ex.update(action(0.2), None)
    counts, means = [], []
    for _ in range(JERK_WINDOW + 1):
        features, _ = ex.update(action(-0.2), None)
        counts.append(features[2])
        means.append(features[1])
    assert counts == [1] * JERK_WINDOW + [0]
    # one jerk of 0.4 (at step 2), then none: averaged over the window, then gone
    assert means[0] == 0.0 and means[-1] == pytest.approx(0.4 / JERK_WINDOW)
    assert ex.update(action(-0.2), None)[0][1] == 0.0


def test_all_families_together_in_storage_order():
    layout = FamilyLayout.build(COLLECTED_FAMILIES, entropy_samples=2, sampler_reason=None, embedding_width=8)
    assert layout.families == COLLECTED_FAMILIES and layout.hidden_dim == 8 and layout.projection is None
    assert layout.entropy_samples == 2
    assert layout.feature_names == [c for f in COLLECTED_FAMILIES for c in FAMILY_COLUMNS[f]]
    assert list(layout.feature_families) == [f for f in COLLECTED_FAMILIES if f != HIDDEN_STATE]
    ex = FamilyExtractor(layout, requery_every=2)
    rng = np.random.default_rng(0)
    query = ChunkQuery(chunks=rng.normal(size=(3, 4, 7)).astype(np.float32),
                       velocities=rng.normal(size=(5, 3, 4, 6)).astype(np.float32),
                       prefix_embedding=rng.normal(size=(3, 8)).astype(np.float32),
                       entropy_samples=rng.normal(size=(2, 3, 4, 7)).astype(np.float32))
    features, hidden = ex.update(action(0.3), query)
    assert features.shape == (len(layout.feature_names),) and hidden.shape == (8,)
    got = {name: features[i] for i, name in enumerate(layout.feature_names)}
    assert got["stac_l2_mean"] == 0 and got["chunk_magnitude"] > 0  # first query: nothing to compare
    assert got["vfd_mean"] > 0 and got["ace_mean"] > 0 and got["jerk"] == 0
    again, hidden_again = ex.update(action(0.3), None)
    np.testing.assert_array_equal(again, features)
    np.testing.assert_array_equal(hidden_again, hidden)


# ---------------------------------------------------------------- choosing the families


def test_parse_families_names_the_known_ones():
    assert parse_families("action_jerk, chunk_consistency,") == (CHUNK_CONSISTENCY, ACTION_JERK)
    assert parse_families(["hidden_state", "hidden_state"]) == (HIDDEN_STATE,)
    with pytest.raises(ValueError) as refused:
        parse_families("chunk_consistency,jerk")
    text = str(refused.value)
    assert "'jerk'" in text and all(name in text for name in COLLECTED_FAMILIES), text


def one_line_config_error(**flags) -> str:
    with pytest.raises(ConfigError) as refused:
        load_collect_config(episodes=1, out="unused", **flags)
    text = str(refused.value)
    assert text and "\n" not in text, text
    return text


def test_settings_for_the_families_and_the_entropy_samples():
    assert load_collect_config(episodes=1, out="unused").signals == DEFAULT_FAMILIES
    assert CHUNK_ENTROPY not in DEFAULT_FAMILIES
    assert "unknown signal family 'jerk'" in one_line_config_error(signals="jerk")
    assert "entropy_samples is 1" in one_line_config_error(policy={"entropy_samples": 1})
    assert "chunk_entropy needs policy.entropy_samples" in one_line_config_error(signals="chunk_entropy")
    with_samples = load_collect_config(episodes=1, out="unused", signals="action_jerk", policy={"entropy_samples": 2})
    assert with_samples.signals == (CHUNK_ENTROPY, ACTION_JERK)


def test_layout_leaves_out_the_sampler_families_without_the_sampling_loop(caplog):
    with caplog.at_level(logging.WARNING, logger="salus_engine.signal_families"):
        layout = FamilyLayout.build(DEFAULT_FAMILIES, 0, "members are ACTPolicy", embedding_width=0)
    assert layout.families == (CHUNK_CONSISTENCY, ACTION_JERK)
    assert layout.hidden_dim == 0 and layout.projection is None
    assert list(layout.feature_families) == [CHUNK_CONSISTENCY, ACTION_JERK]
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "flow_disagreement, hidden_state" in message and "ACTPolicy" in message
    with pytest.raises(ValueError, match="entropy_samples >= 2"):
        FamilyLayout.build((CHUNK_ENTROPY,), 1, None, embedding_width=64)


# ---------------------------------------------------------------- the real members' sampling loop


@pytest.fixture(scope="module")
def observation():
    from salus_engine.sim import PickPlaceEnv

    env = PickPlaceEnv(TINY_SIM)
    try:
        obs, _ = env.reset(seed=3)
        return obs
    finally:
        env.close()


@pytest.fixture(scope="module")
def ensembles():
    """The embedded ensemble (2 members) stacked, stacked with 2 entropy samples, and sequential."""
    torch.set_num_threads(1)
    made = {
        "stacked": PolicyEnsemble(PolicyConfig(ensemble_size=2), ("front",)),
        "entropy": PolicyEnsemble(PolicyConfig(ensemble_size=2, entropy_samples=2), ("front",)),
        "sequential": PolicyEnsemble(PolicyConfig(ensemble_size=2, batched_members=False), ("front",)),
    }
    yield made
    for ensemble in made.values():
        ensemble.close()


def test_member_sampling_loop_gives_lerobots_actions(ensembles, observation):
    ensemble = ensembles["sequential"]
    member = ensemble._members[0]
    batch = member.preprocessor(dict(ensemble._raw_batch(observation)))
    noise = torch.randn((1, ensemble.chunk_size, ensemble._noise_shape[2]), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        actions, velocities, pooled = _MemberChunk(member.policy)(dict(batch), noise)
        member.policy.reset()
        reference = member.policy.predict_action_chunk(dict(batch), noise=noise)
    assert actions.shape == reference.shape == (1, ensemble.chunk_size, 7)
    np.testing.assert_allclose(actions.numpy(), reference.numpy(), rtol=0, atol=1e-6)
    steps = member.policy.config.num_steps
    assert velocities.shape == (steps, 1, ensemble.chunk_size, 7) and pooled.shape == (1, 64)
    # forward Euler from t = 1 to 0: the actions are the noise minus the mean velocity
    np.testing.assert_allclose(actions.numpy(), (noise[..., :7] - velocities.mean(dim=0)).numpy(), atol=1e-5)
    assert torch.isfinite(pooled).all() and pooled.abs().max() > 0


def test_stacked_query_gives_the_sequential_velocities_and_embeddings(ensembles, observation):
    queries = {}
    for name in ("stacked", "sequential"):
        ensemble = ensembles[name]
        ensemble.reset(seed=3)
        ensemble.step(observation)
        queries[name] = ensemble.last_query
        ensemble.step(observation)
        assert ensemble.last_query is None  # no re-query at step 1 (requery_every 6)
    stacked, sequential = queries["stacked"], queries["sequential"]
    assert ensembles["stacked"].query_mode == "stacked" and ensembles["sequential"].query_mode == "sequential"
    assert stacked.velocities.shape == (4, 2, 8, 7) and stacked.prefix_embedding.shape == (2, 64)
    assert stacked.entropy_samples is None
    np.testing.assert_allclose(stacked.chunks, sequential.chunks, rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked.velocities, sequential.velocities, rtol=0, atol=1e-5)
    np.testing.assert_allclose(stacked.prefix_embedding, sequential.prefix_embedding, rtol=0, atol=1e-5)
    # the members are different models: their velocities and embeddings differ
    assert np.abs(stacked.velocities[:, 0] - stacked.velocities[:, 1]).max() > 1e-3
    assert np.abs(stacked.prefix_embedding[0] - stacked.prefix_embedding[1]).max() > 1e-3
    assert ensembles["stacked"].sampler_reason is None and ensembles["stacked"].embedding_width == 64


def test_entropy_samples_leave_the_executed_chunks_unchanged(ensembles, observation):
    from salus_engine.sim import PickPlaceEnv

    runs = {}
    for name in ("stacked", "entropy"):
        ensemble = ensembles[name]
        env = PickPlaceEnv(TINY_SIM)
        try:
            obs, _ = env.reset(seed=3)
            ensemble.reset(seed=3)
            actions, queries = [], []
            for _ in range(7):  # queries at steps 0 and 6
                action_, _members = ensemble.step(obs)
                actions.append(action_)
                if ensemble.last_query is not None:
                    queries.append(ensemble.last_query)
                obs, *_ = env.step(action_)
        finally:
            env.close()
        runs[name] = (np.stack(actions), queries)
    (plain_actions, plain), (actions, sampled) = runs["stacked"], runs["entropy"]
    assert len(plain) == len(sampled) == 2
    np.testing.assert_array_equal(actions, plain_actions)
    for with_samples, without in zip(sampled, plain):
        np.testing.assert_array_equal(with_samples.chunks, without.chunks)
        assert with_samples.entropy_samples.shape == (2, 2, 8, 7)
        samples = with_samples.entropy_samples
        assert np.abs(samples[0] - samples[1]).max() > 1e-3  # fresh noise per sample
        assert np.abs(samples[0] - with_samples.chunks).max() > 1e-3
    # the same seed draws the same entropy samples again
    ensembles["entropy"].reset(seed=3)
    ensembles["entropy"].step(observation)
    first = ensembles["entropy"].last_query.entropy_samples
    ensembles["entropy"].reset(seed=3)
    ensembles["entropy"].step(observation)
    np.testing.assert_array_equal(ensembles["entropy"].last_query.entropy_samples, first)


# ---------------------------------------------------------------- the store


FAMILIES = {"chunk_consistency": list(FAMILY_COLUMNS[CHUNK_CONSISTENCY]), "action_jerk": list(FAMILY_COLUMNS[ACTION_JERK])}
WIDTH = len(FAMILY_COLUMNS[CHUNK_CONSISTENCY]) + len(FAMILY_COLUMNS[ACTION_JERK])


def family_record(episode_id: int, length: int = 12, **values):
    rec = record(episode_id, length=length, **values)
    t = np.arange(length, dtype=np.float32)[:, None]
    rec.features = (np.sin(t + np.arange(WIDTH)) * 1.1).astype(np.float32)
    rec.hidden_features = (np.cos(t * 0.37 + np.arange(HIDDEN_DIM)) * 3.3).astype(np.float16)
    return rec


def family_store(path, projection=None):
    return EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=8, ensemble_size=3,
                                base_seed=100, policy="test", sim_config={"collision_force_n": 30.0},
                                feature_families=FAMILIES, hidden_dim=HIDDEN_DIM, hidden_projection=projection)


def test_format_3_round_trip_keeps_the_families_bit_identical(tmp_path):
    projection = hidden_projection(96)
    writer = family_store(tmp_path / "s", projection)
    written = [family_record(0, failure_type=-1), family_record(1, length=7, failure_type=2, failure_step=6)]
    for rec in written:
        writer.write(rec)
    writer.close()
    store = EpisodeStore.open(tmp_path / "s")
    assert store.attrs["format_version"] == 4  # format 3 families, written by a format-4 writer
    assert store.feature_families == FAMILIES and store.hidden_dim == HIDDEN_DIM
    assert store.feature_names == FAMILIES["chunk_consistency"] + FAMILIES["action_jerk"]
    assert store.array_names()[-2:] == ("features", "hidden_features")
    for rec in written:
        episode = store.episode_by_id(rec.episode_id)
        assert episode.features.dtype == np.float32 and episode.hidden_features.dtype == np.float16
        assert episode.features.tobytes() == rec.features.tobytes()
        assert episode.hidden_features.tobytes() == rec.hidden_features.tobytes()
    read = store.read_arrays(("features", "hidden_features"), [1])
    np.testing.assert_array_equal(read[0]["hidden_features"], written[1].hidden_features)
    root = zarr.open_group(str(tmp_path / "s"), mode="r")
    np.testing.assert_array_equal(root["hidden_projection"][...], projection)
    report = verify_store(tmp_path / "s")
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    # a record that lacks the families, or has the wrong width, is refused before anything is written
    writer = EpisodeWriter.open_for_resume(tmp_path / "s")
    missing = family_record(2)
    missing.features = None
    with pytest.raises(ValueError, match="features missing"):
        writer.write(missing)
    narrow = family_record(2)
    narrow.features = narrow.features[:, :3]
    with pytest.raises(ValueError, match=r"features has shape \(12, 3\), expected \(12, 9\)"):
        writer.write(narrow)
    writer.close()
    assert len(EpisodeStore.open(tmp_path / "s")) == 2


def test_a_features_array_of_the_wrong_width_is_named(tmp_path):
    path = tmp_path / "s"
    writer = family_store(path)
    for i in range(2):
        writer.write(family_record(i))
    writer.close()
    group = zarr.open_group(str(path / "episodes" / "000001"), mode="a")
    del group["features"]
    group.create_array("features", data=np.zeros((12, WIDTH + 2), np.float32))
    expected = "array 'features' is (12, 11) 'float32', expected (12, 9) float32"
    problems = " | ".join(verify_store(path).problems)
    assert "episode 1" in problems and expected in problems, problems
    with pytest.raises(StoreError) as refused:
        EpisodeWriter.open_for_resume(path)
    text = str(refused.value)
    assert "\n" not in text and "episode 1" in text and "features" in text, text


def test_salus_verify_flags_nan_in_the_features(tmp_path, capsys):
    from salus_engine.cli import main

    path = tmp_path / "s"
    writer = family_store(path)
    writer.write(family_record(0))
    bad = family_record(1)
    bad.features[4, 2] = np.nan
    writer.write(bad)
    writer.close()
    code = main(["--log", str(tmp_path / "verify.log"), "verify", str(path)])
    out = capsys.readouterr().out
    assert code == 1, out
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "episode 1" in problems[0] and "NaN or inf in features" in problems[0], out


def test_a_format_2_store_without_families_still_opens_lists_and_verifies(tmp_path):
    path = tmp_path / "v2"
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=8, ensemble_size=3,
                                  base_seed=100, policy="test", sim_config={"collision_force_n": 30.0})
    writer.close()
    # as SALUS before format 3 wrote it: format_version 2, no family attributes
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["format_version"] = 2
    for name in ("feature_families", "hidden_dim"):
        del meta["attributes"][name]
    meta_path.write_text(json.dumps(meta))
    writer = EpisodeWriter.open_for_resume(path)
    writer.write(record(0, failure_type=-1))
    writer.write(record(1, failure_type=0, failure_step=9))
    writer.close()
    assert not (path / "episodes" / "000000" / "features").exists()
    store = EpisodeStore.open(path)
    assert store.attrs["format_version"] == 2 and len(store.listing()) == 2
    assert store.feature_families == {} and store.feature_names == [] and store.hidden_dim == 0
    assert store.array_names() == ("images", "states", "actions", "member_actions", "signals", "horizon_labels")
    episode = store.episode(1)
    assert episode.features is None and episode.hidden_features is None
    np.testing.assert_array_equal(episode.signals, record(1).signals)
    report = verify_store(path)
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    resumed = EpisodeWriter.open_for_resume(path)
    assert resumed.next_episode_id == 2
    resumed.close()


# ---------------------------------------------------------------- a real collection


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """One tiny in-process collection with the default families."""
    from salus_engine.jobs import run_collection

    config = tiny_settings(tmp_path_factory.mktemp("families") / "store", episodes=1)
    summary = run_collection(config)
    assert summary.episodes_written == 1
    return config


def test_a_tiny_collection_records_every_default_family(collected):
    store = EpisodeStore.open(collected.out)
    expected = {f: list(FAMILY_COLUMNS[f]) for f in DEFAULT_FAMILIES if FAMILY_COLUMNS[f]}
    assert store.feature_families == expected and store.hidden_dim == HIDDEN_DIM
    assert not (store.path / "hidden_projection").exists()  # the embedded policy is 64 wide: stored as is
    episode = store.episode(0)
    features, hidden = episode.features, episode.hidden_features
    steps = episode.meta.episode_length
    assert features.shape == (steps, len(store.feature_names)) and features.dtype == np.float32
    assert hidden.shape == (steps, HIDDEN_DIM) and hidden.dtype == np.float16
    assert np.all(np.isfinite(features)) and np.all(np.isfinite(hidden))
    names = store.feature_names
    column = {name: features[:, names.index(name)] for name in names}
    every = collected.policy.requery_every
    assert steps > every  # at least two queries
    # query-based columns: held between re-queries, zero consistency at the first query only
    for name in ("stac_l2_mean", "chunk_magnitude", "vfd_mean", "vfd_first", "vfd_last"):
        assert np.all(column[name][:every] == column[name][0]), name
    assert np.all(hidden[:every] == hidden[0])
    assert column["stac_l2_mean"][0] == 0 and column["stac_l2_mean"][every] > 0
    assert column["chunk_magnitude"][0] > 0 and column["vfd_mean"][0] > 0 and np.abs(hidden[0]).max() > 0
    assert column["vfd_first"][0] != column["vfd_last"][0]
    assert column["jerk"][:2].tolist() == [0, 0] and column["jerk"][2:].max() > 0
    assert verify_store(collected.out).ok


def test_resume_with_other_signal_families_is_refused_in_one_line(collected, tmp_path, capsys):
    from salus_engine.cli import main

    code = main(["--log", str(tmp_path / "collect.log"), "collect", "--episodes", "2", "--out", str(collected.out),
                 "--resume", "--signals", "chunk_consistency,action_jerk", "--seed", str(collected.seed),
                 *tiny_flags(collected.sim.max_steps)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("salus: error: cannot resume"), err
    assert "signal families" in err[0] and "hidden 64" in err[0], err
    assert len(EpisodeStore.open(collected.out)) == 1
