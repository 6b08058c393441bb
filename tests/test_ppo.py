"""PPO pieces: GAE by hand (truncation bootstraps, termination does not), rollout storage, update."""

import pytest
import torch

from blendrl.agents import NeuralAgent
from blendrl.algos.ppo import PPOConfig, RolloutStorage, compute_gae, ppo_update
from blendrl.envs import get_spec


def test_gae_matches_hand_computation_with_truncation_and_termination():
    # One env, three steps: step 0 continues, step 1 is truncated (final state value 2.0),
    # step 2 terminates. gamma 0.9, lambda 0.8.
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.6], [0.7]])
    next_values = torch.tensor([[0.6], [2.0], [123.0]])  # 123 must be ignored: terminated
    terminated = torch.tensor([[0.0], [0.0], [1.0]])
    dones = torch.tensor([[0.0], [1.0], [1.0]])
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, 0.9, 0.8)
    # delta2 = 1 - 0.7 = 0.3                      A2 = 0.3
    # delta1 = 1 + 0.9 * 2.0 - 0.6 = 2.2          A1 = 2.2 (chain cut by the episode end)
    # delta0 = 1 + 0.9 * 0.6 - 0.5 = 1.04         A0 = 1.04 + 0.9 * 0.8 * 2.2 = 2.624
    assert adv.squeeze(1).tolist() == pytest.approx([2.624, 2.2, 0.3], abs=1e-6)
    assert ret.squeeze(1).tolist() == pytest.approx([3.124, 2.8, 1.0], abs=1e-6)


def test_rollout_storage_uses_next_stored_value_unless_episode_ended():
    st = RolloutStorage(3, 1, (2, 2), (4,), torch.float32, torch.device("cpu"))
    st.rewards[:] = torch.tensor([[1.0], [1.0], [1.0]])
    st.values[:] = torch.tensor([[0.5], [0.6], [0.7]])
    st.terminated[:] = torch.tensor([[0.0], [0.0], [0.0]])
    st.dones[:] = torch.tensor([[0.0], [1.0], [0.0]])
    st.chain_ends[:] = st.dones
    st.next_values[1, 0] = 2.0  # V(final state) of the truncated episode
    batch = st.finish(torch.tensor([0.9]), 0.9, 0.8)
    # t2: delta = 1 + 0.9*0.9 - 0.7 = 1.11; t1: delta = 1 + 0.9*2.0 - 0.6 = 2.2 (cut);
    # t0: delta = 1 + 0.9*0.6 - 0.5 = 1.04, A0 = 1.04 + 0.72*2.2 = 2.624
    assert batch.advantages.tolist() == pytest.approx([2.624, 2.2, 1.11], abs=1e-6)


def test_ppo_update_raises_probability_of_advantaged_action():
    torch.manual_seed(0)
    spec = get_spec("cartpole")
    agent = NeuralAgent(spec)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-2)
    st = RolloutStorage(16, 4, spec.logic_shape, spec.neural_shape, torch.float32, torch.device("cpu"))
    st.neural.normal_()
    st.actions.fill_(1)
    with torch.no_grad():
        out = agent.get_action_and_value(st.logic.flatten(0, 1), st.neural.flatten(0, 1), st.actions.flatten())
    st.log_probs[:] = out.log_prob.view(16, 4)
    st.values[:] = out.value.view(16, 4)
    st.rewards.fill_(1.0)
    batch = st.finish(torch.zeros(4), 0.99, 0.95)
    # advantages must vary for normalisation: make half the actions bad
    batch = batch._replace(advantages=torch.where(torch.arange(64) % 2 == 0, 1.0, -1.0),
                           actions=torch.where(torch.arange(64) % 2 == 0, 1, 0))
    with torch.no_grad():
        before = agent.action_probs(batch.logic, batch.neural)
    stats = ppo_update(agent, opt, batch, PPOConfig(update_epochs=2))
    with torch.no_grad():
        after = agent.action_probs(batch.logic, batch.neural)
    even = torch.arange(64) % 2 == 0
    assert (after[even, 1] - before[even, 1]).mean() > 0
    assert (after[~even, 0] - before[~even, 0]).mean() < 0
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl"} <= set(stats)
