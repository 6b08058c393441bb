"""The one evaluation function: fixed episode assignment, per-episode seeds, no dependence on the
number of parallel copies, and the result schema shared by all methods."""

import numpy as np
import pytest
import torch

from blendrl.agents import BlendRLAgent, NeuralAgent
from blendrl.envs import get_spec, make_vec_env
from blendrl.evaluation import EVAL_SEED_OFFSET, episode_quotas, eval_seed, evaluate, result_entry

CPU = torch.device("cpu")


def test_quotas_are_fixed_in_advance():
    assert episode_quotas(10, 4).tolist() == [3, 3, 2, 2]
    assert episode_quotas(3, 8).tolist() == [1, 1, 1]
    assert episode_quotas(8, 8).tolist() == [1] * 8


def test_eval_seeds_are_far_from_training_seeds():
    assert eval_seed(0) == EVAL_SEED_OFFSET and eval_seed(3) - eval_seed(2) == 10_000
    assert eval_seed(0) > 10_000_000


def test_result_does_not_depend_on_parallel_copies():
    torch.manual_seed(1)
    agent = NeuralAgent(get_spec("cartpole"))
    results = [evaluate(agent, "cartpole", 7, seed=5, device=CPU, num_envs=k) for k in (1, 3, 8)]
    for r in results[1:]:
        assert np.array_equal(r.returns, results[0].returns)
        assert np.array_equal(r.lengths, results[0].lengths)
    assert len(results[0].returns) == 7
    assert len(set(results[0].lengths.tolist())) > 1  # different starts, not one episode repeated


def test_episode_j_starts_from_seed_base_plus_j():
    """A longer evaluation begins with the same episodes, and episode j is a plain reset with
    seed eval_seed(seed) + j played by the same greedy policy."""
    torch.manual_seed(2)
    agent = NeuralAgent(get_spec("mountaincar"))
    short = evaluate(agent, "mountaincar", 3, seed=1, device=CPU, num_envs=2, policy="greedy")
    long = evaluate(agent, "mountaincar", 6, seed=1, device=CPU, num_envs=4, policy="greedy")
    assert np.array_equal(long.returns[:3], short.returns)
    env = make_vec_env("mountaincar", 1)
    logic, neural = env.reset(seed=eval_seed(1) + 4)
    while True:
        action, _ = agent.act(torch.as_tensor(logic), torch.as_tensor(neural))
        step = env.step(action.numpy())
        logic, neural = step.obs_logic, step.obs_neural
        if step.done[0]:
            break
    env.close()
    assert step.episode_return[0] == long.returns[4] and step.episode_length[0] == long.lengths[4]


def test_blend_weight_and_entry_schema():
    agent = BlendRLAgent(get_spec("cartpole"))
    res = evaluate(agent, "cartpole", 2, seed=0, device=CPU)
    assert 0.0 <= res.logic_weight <= 1.0
    entry = result_entry(res, interval=1, data_limit=100, train_seconds=1.5, eval_seconds=0.5, grad_steps=7)
    assert entry["episodes"] == 2 and entry["returns"] == res.returns.tolist()
    assert entry["mean_return"] == pytest.approx(res.mean) and entry["grad_steps"] == 7
    assert entry["logic_weight"] == res.logic_weight
    with pytest.raises(ValueError):
        evaluate(agent, "cartpole", 0, seed=0, device=CPU)


def test_sampled_episode_j_uses_its_own_uniforms():
    """policy="sample" (the default): episode j draws action t by inverse CDF from the t-th
    uniform of default_rng(eval_seed(seed) + j), whatever the number of parallel copies."""
    from blendrl.agents.base import inverse_cdf_sample

    torch.manual_seed(3)
    agent = NeuralAgent(get_spec("cartpole"))
    res = evaluate(agent, "cartpole", 5, seed=2, device=CPU, num_envs=3)
    assert np.array_equal(res.returns, evaluate(agent, "cartpole", 5, seed=2, device=CPU, num_envs=5).returns)
    env = make_vec_env("cartpole", 1)
    logic, neural = env.reset(seed=eval_seed(2) + 3)
    rng = np.random.default_rng(eval_seed(2) + 3)
    while True:
        probs = agent.action_probs(torch.as_tensor(logic), torch.as_tensor(neural))
        action = inverse_cdf_sample(probs, torch.tensor([rng.random()], dtype=torch.float32))
        step = env.step(action.numpy())
        logic, neural = step.obs_logic, step.obs_neural
        if step.done[0]:
            break
    env.close()
    assert step.episode_length[0] == res.lengths[3]


def test_inverse_cdf_sample_by_hand():
    from blendrl.agents.base import inverse_cdf_sample

    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]] * 6)
    u = torch.tensor([0.0, 0.1, 0.2, 0.69, 0.71, 0.9999999])
    assert inverse_cdf_sample(probs, u).tolist() == [0, 0, 2, 2, 3, 3]
    # a trailing action of probability 0 is never drawn, even at u -> 1
    assert inverse_cdf_sample(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([0.99999994])).tolist() == [1]
    # the frequencies follow the probabilities
    g = torch.Generator().manual_seed(0)
    draws = inverse_cdf_sample(probs[:1].expand(20000, 4), torch.rand(20000, generator=g))
    freq = torch.bincount(draws, minlength=4).float() / 20000
    assert torch.allclose(freq, probs[0], atol=0.01)


class _OneAction(NeuralAgent):
    """A policy that always takes the same action (all its probability on it)."""

    def __init__(self, spec, action: int):
        super().__init__(spec)
        self.action = action

    def policy(self, logic, neural):
        from blendrl.agents.base import Policy

        log_probs = torch.full((logic.shape[0], self.spec.n_actions), -float("inf"))
        log_probs[:, self.action] = 0.0
        return Policy(log_probs, None, None)


@pytest.mark.slow
def test_kangaroo_evaluation_episodes_are_distinct_for_a_constant_policy():
    """Issue 13: a policy that always takes one action repeated one game 8 times; with the
    random no-op starts drawn from each episode's seed, 8 episodes are at least 6 games."""
    spec = get_spec("kangaroo")
    res = evaluate(_OneAction(spec, spec.action_names.index("noop")), "kangaroo", 8, seed=0,
                   device=CPU, num_envs=8, policy="greedy")
    pairs = set(zip(res.returns.tolist(), res.lengths.tolist()))
    assert len(pairs) >= 6, pairs
