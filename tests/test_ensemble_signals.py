"""The seeds' wrapper test, in spirit: one PolicyEnsemble step in the real simulator gives a (7,)
action and a (6,) signal vector, and both vary across steps."""

import numpy as np

from salus_engine.policy import PolicyEnsemble
from salus_engine.signals import SignalExtractor
from salus_engine.sim import PickPlaceEnv


def test_ensemble_step_gives_action_and_signals_that_vary(tiny_collect_config):
    config = tiny_collect_config
    env = PickPlaceEnv(config.sim)
    ensemble = PolicyEnsemble(config.policy, cameras=config.sim.cameras)
    extractor = SignalExtractor()
    try:
        obs, _ = env.reset(seed=3)
        ensemble.reset(seed=3)
        actions, signals = [], []
        for _ in range(12):
            action, member_actions = ensemble.step(obs)
            assert action.shape == (7,) and action.dtype == np.float32
            assert member_actions.shape == (ensemble.ensemble_size, 7)
            np.testing.assert_allclose(action, member_actions.mean(axis=0), rtol=1e-5, atol=1e-6)
            s = extractor.update(member_actions)
            assert s.shape == (6,) and s.dtype == np.float32 and np.all(np.isfinite(s))
            actions.append(action)
            signals.append(s)
            obs, _r, terminated, truncated, _info = env.step(action)
            if terminated or truncated:
                break
    finally:
        env.close()
        ensemble.close()
    actions, signals = np.array(actions), np.array(signals)
    assert actions.std(axis=0).max() > 1e-3, "actions are frozen"
    assert signals[:, 0].min() > 0, "members never disagree"
    for k in range(5):
        assert signals[:, k].std() > 0, f"signal {k} never varies"
