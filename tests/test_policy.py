"""The policy ensemble on real lerobot SmolVLA classes and the real simulator, at tiny settings.

One module-scoped fixture records two short scripted-expert demonstrations (64x64 images, 30 steps)
and trains two members for a few steps; the tests load them back through lerobot.
"""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from salus_engine.config import DEFAULT_POLICY_DIR, PolicyConfig, SimConfig
from salus_engine.policy.behaviour_cloning import TrainSettings, smolvla_config, train_member
from salus_engine.policy.checkpoint import BACKBONE_SUBDIR, PolicyLoadError, load_member, save_member
from salus_engine.policy.demonstrations import record_demonstrations
from salus_engine.policy.ensemble import IOMapping, PolicyEnsemble
from salus_engine.policy.tiny_backbone import write_tiny_backbone

TINY_SIM = SimConfig(image_size=64, max_steps=30)
SETTINGS = TrainSettings(steps=6, batch_size=4, image_size=64, chunk_size=8, warmup_steps=2, threads=1, lr=1e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Backbone dir, demonstrations and a folder with two briefly trained members."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("policy")
    backbone = write_tiny_backbone(root / "backbone", image_size=64)
    demos = record_demonstrations(TINY_SIM, episodes=2, image_size=64, noise_std=0.15)
    members = root / "ensemble"
    for i in range(2):
        policy, pre, post, _ = train_member(demos, backbone, SETTINGS, member=i)
        save_member(policy, pre, post, members / f"member_{i}")
    return SimpleNamespace(root=root, backbone=backbone, demos=demos, members=members)


def _rollout(ensemble: PolicyEnsemble, steps: int, seed: int = 3):
    from salus_engine.sim import PickPlaceEnv

    env = PickPlaceEnv(TINY_SIM)
    try:
        obs, info = env.reset(seed=seed)
        ensemble.reset(seed=seed, instruction=info["instruction"])
        actions, members = [], []
        for _ in range(steps):
            action, member_actions = ensemble.step(obs)
            actions.append(action)
            members.append(member_actions)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        return np.stack(actions), np.stack(members)
    finally:
        env.close()


def test_tiny_backbone_builds_a_smolvla_policy_through_lerobot(tmp_path):
    from lerobot.policies.smolvla import SmolVLAPolicy
    from transformers import AutoConfig, AutoProcessor

    backbone = write_tiny_backbone(tmp_path / "backbone", image_size=64)
    config = AutoConfig.from_pretrained(backbone)
    processor = AutoProcessor.from_pretrained(backbone)
    tokenizer = processor.tokenizer
    assert config.model_type == "smolvlm"
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert tokenizer.fake_image_token_id == tokenizer.convert_tokens_to_ids("<fake_token_around_image>")
    assert tokenizer.global_image_token_id == tokenizer.convert_tokens_to_ids("<global-img>")
    assert len(tokenizer.tokenize("Pick up the red cube and place it in the blue bin")) <= 12
    policy = SmolVLAPolicy(smolvla_config(backbone, ("front",), 64, chunk_size=8))
    n_params = sum(p.numel() for p in policy.parameters())
    assert 100_000 < n_params < 1_000_000


def test_backbone_rejects_an_image_size_that_is_not_a_multiple_of_64(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        write_tiny_backbone(tmp_path / "b", image_size=100)


def test_behaviour_cloning_lowers_the_flow_matching_loss(trained):
    """Same seed -> same initialisation; loss on a fixed batch, noise and flow time before vs after."""
    from salus_engine.policy.behaviour_cloning import _batch

    settings = TrainSettings(**{**SETTINGS.__dict__, "steps": 60, "batch_size": 8, "lr": 2e-3, "warmup_steps": 5, "shift_px": 0})
    demos = trained.demos
    index = np.arange(0, len(demos), max(1, len(demos) // 16))[:16]

    def fixed_loss(policy, pre) -> float:
        batch = pre(_batch(demos, index, settings.chunk_size, 0, torch.Generator().manual_seed(0)))
        gen = torch.Generator().manual_seed(1)
        noise = torch.randn(len(index), settings.chunk_size, policy.config.max_action_dim, generator=gen)
        time = torch.rand(len(index), generator=gen) * 0.9 + 0.05
        with torch.no_grad():
            loss, _ = policy.forward(batch, noise=noise, time=time)
        return float(loss)

    before_policy, before_pre, _, _ = train_member(demos, trained.backbone, settings, member=5, steps=0)
    after_policy, after_pre, _, losses = train_member(demos, trained.backbone, settings, member=5)
    assert len(losses) == 60
    before, after = fixed_loss(before_policy, before_pre), fixed_loss(after_policy, after_pre)
    assert after < 0.8 * before, (before, after)


def test_fine_tuned_member_starts_from_the_base_on_a_bootstrap_resample(trained):
    from salus_engine.policy.behaviour_cloning import bootstrap_steps

    demos = trained.demos
    pool = bootstrap_steps(demos, np.random.default_rng(0))
    # whole episodes only: every drawn episode contributes all of its steps, as often as it was drawn
    counts = np.bincount(demos.episode[pool], minlength=len(demos.outcomes))
    lengths = np.diff(np.concatenate([[0], demos.episode_end]))
    assert counts.sum() == len(pool) and np.all(counts % lengths == 0) and (counts // lengths).sum() == len(lengths)
    base, _, _, _ = train_member(demos, trained.backbone, SETTINGS, member=0)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    start, _, _, _ = train_member(demos, trained.backbone, SETTINGS, member=1, init_state=state, steps=0)
    assert all(torch.equal(state[k], v) for k, v in start.state_dict().items())
    tuned, _, _, losses = train_member(demos, trained.backbone, SETTINGS, member=1, init_state=state, steps=3)
    assert len(losses) == 3
    assert any(not torch.equal(state[k], v) for k, v in tuned.state_dict().items())


def test_save_and_load_keep_weights_equal_and_repoint_the_backbone(trained, tmp_path):
    source = trained.members / "member_0"
    for name in ("config.json", "policy_preprocessor.json"):
        assert str(trained.root) not in (source / name).read_text(), "absolute backbone path leaked"
    assert json.loads((source / "config.json").read_text())["vlm_model_name"] == BACKBONE_SUBDIR
    moved = tmp_path / "moved_member"
    shutil.copytree(source, moved)
    member = load_member(moved, "cpu")
    assert member.policy.config.vlm_model_name == str((moved / BACKBONE_SUBDIR).resolve())
    from safetensors.torch import load_file

    saved = load_file(str(moved / "model.safetensors"))
    state = member.policy.state_dict()
    assert set(saved) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert not member.policy.training


def test_loading_a_member_reads_lerobots_config_and_leaves_no_temporary_file(trained, tmp_path, monkeypatch):
    import tempfile

    from lerobot.configs import PreTrainedConfig

    from salus_engine.policy.checkpoint import read_policy_config

    source = str((trained.members / "member_0").resolve())
    private = tmp_path / "temp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # this process's temp folder, for this test only
    assert read_policy_config(source) == PreTrainedConfig.from_pretrained(source)
    assert len(list(private.iterdir())) == 1  # lerobot's own reader leaves its parsed copy behind
    for leftover in private.iterdir():
        leftover.unlink()
    load_member(source, "cpu")
    assert list(private.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_policy_config(str(tmp_path))


def test_load_refuses_a_member_with_missing_weights(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(trained.members / "member_0", broken)
    tensors = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in tensors if "action_out_proj" in k)
    del tensors[dropped]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(PolicyLoadError, match="lacks 1 tensors"):
        load_member(broken, "cpu")


def test_ensemble_step_gives_mean_action_and_varying_member_actions(trained):
    ensemble = PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2, requery_every=2), ("front",))
    assert ensemble.ensemble_size == 2 and not ensemble.shared_checkpoint and ensemble.notes == []
    actions, members = _rollout(ensemble, steps=8)
    assert actions.shape == (8, 7) and actions.dtype == np.float32
    assert members.shape == (8, 2, 7) and members.dtype == np.float32
    np.testing.assert_allclose(actions, members.mean(axis=1), rtol=1e-6, atol=1e-6)
    assert np.all(members.std(axis=1).mean(axis=1) > 1e-4), "members never disagree"
    assert np.abs(np.diff(actions, axis=0)).max() > 1e-3, "actions frozen across steps"
    # Same episode seed -> same shared noise -> identical actions (disagreement is model disagreement).
    again, _ = _rollout(ensemble, steps=8)
    np.testing.assert_allclose(actions, again, atol=1e-5)
    ensemble.close()


def test_one_checkpoint_queried_m_times_differs_by_sampling_noise(trained):
    ensemble = PolicyEnsemble(PolicyConfig(path=str(trained.members / "member_1"), ensemble_size=3), ("front",))
    assert ensemble.shared_checkpoint and "sampling noise only" in ensemble.notes[0]
    _, members = _rollout(ensemble, steps=4)
    assert members.shape == (4, 3, 7)
    assert members[0].std(axis=0).mean() > 1e-4


def test_stacked_members_give_the_sequential_member_actions():
    """The embedded ensemble in one vmapped pass vs member by member: the same member actions over
    14 steps (queries at steps 0, 6 and 12), so episodes replay the same whichever path runs."""
    from safetensors.torch import load_file

    stacked = PolicyEnsemble(PolicyConfig(ensemble_size=3), ("front",))
    sequential = PolicyEnsemble(PolicyConfig(ensemble_size=3, batched_members=False), ("front",))
    assert stacked.query_mode == "stacked" and sequential.query_mode == "sequential"
    actions, members = _rollout(stacked, steps=14)
    _, reference = _rollout(sequential, steps=14)
    assert members.shape == reference.shape == (14, 3, 7)
    np.testing.assert_allclose(members, reference, rtol=0, atol=1e-5)
    assert np.all(members.std(axis=1).mean(axis=1) > 1e-4), "members never disagree"
    assert np.abs(members[6] - members[5]).max() > 1e-4 and np.abs(members[12] - members[11]).max() > 1e-4
    np.testing.assert_allclose(actions, members.mean(axis=1), rtol=1e-6, atol=1e-6)
    # the members' own weights are views of the stacked ones, unchanged
    stacked_weight = stacked._stacked._params["policy.model.action_out_proj.weight"]
    for i, member in enumerate(stacked._members):
        saved = load_file(str(DEFAULT_POLICY_DIR / f"member_{i}" / "model.safetensors"))
        state = member.policy.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())
        weight = member.policy.model.action_out_proj.weight
        assert weight.untyped_storage().data_ptr() == stacked_weight.untyped_storage().data_ptr()
    stacked.close(), sequential.close()


def test_one_checkpoint_batches_its_noises_along_the_batch_dimension():
    path = str(DEFAULT_POLICY_DIR / "member_1")
    batched = PolicyEnsemble(PolicyConfig(path=path, ensemble_size=3), ("front",))
    sequential = PolicyEnsemble(PolicyConfig(path=path, ensemble_size=3, batched_members=False), ("front",))
    assert batched.query_mode == "noise batch" and sequential.query_mode == "sequential"
    _, members = _rollout(batched, steps=8)
    _, reference = _rollout(sequential, steps=8)
    np.testing.assert_allclose(members, reference, rtol=0, atol=1e-5)
    assert members[0].std(axis=0).mean() > 1e-4, "the M noises were not different"
    batched.close(), sequential.close()


def test_members_that_cannot_be_stacked_run_one_after_another_and_say_so_once(trained, tmp_path, caplog):
    """A 128-pixel embedded member beside a 64-pixel trained one (another vision input and integration
    step count), and two embedded members whose saved `num_steps` differ."""
    mixed = tmp_path / "mixed"
    shutil.copytree(DEFAULT_POLICY_DIR / "member_0", mixed / "member_0")
    shutil.copytree(trained.members / "member_0", mixed / "member_1")
    steps = tmp_path / "steps"
    for i in range(2):
        shutil.copytree(DEFAULT_POLICY_DIR / f"member_{i}", steps / f"member_{i}")
    config_file = steps / "member_1" / "config.json"
    config_file.write_text(config_file.read_text().replace('"num_steps": 4', '"num_steps": 3'))
    for folder, differs in ((mixed, "resize_imgs_with_padding"), (steps, "num_steps")):
        with caplog.at_level(logging.INFO, logger="salus_engine.policy.ensemble"):
            caplog.clear()
            ensemble = PolicyEnsemble(PolicyConfig(path=str(folder), ensemble_size=2), ("front",))
            assert ensemble.query_mode == "sequential" and ensemble._stacked is None
            # their flows have other step counts: no velocities side by side, the families say why
            assert "different numbers of denoising steps" in ensemble.sampler_reason
            assert ensemble.embedding_width == 0
            actions, members = _rollout(ensemble, steps=8)
            _rollout(ensemble, steps=8)
        fallbacks = [r for r in caplog.records if "one after another, not batched" in r.getMessage()]
        assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
        assert differs in fallbacks[0].getMessage()
        assert members.shape == (8, 2, 7) and np.all(np.isfinite(members))
        assert np.abs(members[:, 0] - members[:, 1]).max() > 1e-4
        ensemble.close()
    # the same settings everywhere: the denoising-steps override makes the members stackable again
    same = PolicyEnsemble(PolicyConfig(path=str(steps), ensemble_size=2, denoising_steps=4), ("front",))
    assert same.query_mode == "stacked" and same.sampler_reason is None
    same.close()


def test_denoising_steps_set_the_flow_matching_integration_of_every_member(trained):
    own = PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2), ("front",))
    fewer = PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2, denoising_steps=2), ("front",))
    assert [m.policy.config.num_steps for m in own._members] == [10, 10]
    assert [m.policy.config.num_steps for m in fewer._members] == [2, 2]
    # same seed and noise, a coarser integration: a different (but close) first chunk
    a, _ = _rollout(own, steps=1)
    b, _ = _rollout(fewer, steps=1)
    assert np.abs(a - b).max() > 1e-4
    own.close(), fewer.close()


def test_ensemble_errors_name_the_problem(trained, tmp_path):
    with pytest.raises(PolicyLoadError, match="holds 2 members"):
        PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=3), ("front",))
    with pytest.raises(PolicyLoadError, match="does not exist"):
        PolicyEnsemble(PolicyConfig(path=str(tmp_path / "nowhere")), ("front",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyLoadError, match="neither member_<i> folders nor a policy"):
        PolicyEnsemble(PolicyConfig(path=str(tmp_path / "empty")), ("front",))
    with pytest.raises(ValueError, match="requery_every"):
        PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2, requery_every=99), ("front",))
    with pytest.raises(ValueError, match="denoising_steps"):
        PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2, denoising_steps=-1), ("front",))
    if not torch.cuda.is_available():
        with pytest.raises(PolicyLoadError, match="CUDA is not available"):
            PolicyEnsemble(PolicyConfig(path=str(trained.members), ensemble_size=2, device="cuda"), ("front",))


def test_checkpoint_with_other_cameras_and_action_size_is_mapped_explicitly(trained):
    """A 6-dim, 3-camera checkpoint (like lerobot/smolvla_base) on the 7-dim, 1-camera env."""
    from lerobot.configs import FeatureType, PolicyFeature

    policy_config = smolvla_config(trained.backbone, ("camera1", "camera2", "camera3"), 64, chunk_size=8,
                                   state_dim=6, action_dim=6)
    mapping = IOMapping.build(policy_config, ("front",), 7, PolicyConfig())
    assert mapping.cameras == [("observation.images.camera1", "front")]
    assert mapping.action_index.tolist() == [0, 1, 2, 3, 4, -1, 5]
    text = "\n".join(mapping.notes)
    assert "'camera1' <- env camera 'front'" in text and "'camera3' gets no image" in text
    assert "held at 0.0" in text and "policy state has 6 dims" in text
    env_action = mapping.env_actions(np.arange(1, 7, dtype=np.float32))
    assert env_action.tolist() == [1, 2, 3, 4, 5, 0, 6]
    explicit = IOMapping.build(policy_config, ("front", "wrist"), 7,
                               PolicyConfig(camera_map="camera2=wrist", action_map="0,1,2,-,-,6"))
    assert ("observation.images.camera2", "wrist") in explicit.cameras
    assert explicit.action_index.tolist() == [0, 1, 2, -1, -1, -1, 5]
    with pytest.raises(PolicyLoadError, match="not an env action dim"):
        IOMapping.build(policy_config, ("front",), 7, PolicyConfig(action_map="0,1,2,3,4,9"))
    same = smolvla_config(trained.backbone, ("front",), 64, chunk_size=8)
    identity = IOMapping.build(same, ("front",), 7, PolicyConfig())
    assert identity.notes == [] and identity.action_index.tolist() == list(range(7))
    assert PolicyFeature(type=FeatureType.STATE, shape=(8,)) == same.input_features["observation.state"]
