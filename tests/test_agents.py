"""Agents: the blended distribution is exactly w_n * pi_n + w_l * pi_l, modes, groups, log-probs."""

import shutil

import pytest
import torch

from blendrl.agents import BlendRLAgent, NeuralAgent
from blendrl.envs import get_spec, make_vec_env


def real_states(env: str, n: int = 6):
    vec = make_vec_env(env, n)
    logic, neural = vec.reset(seed=0)
    vec.close()
    return torch.as_tensor(logic), torch.as_tensor(neural)


@pytest.mark.parametrize("env", ["cartpole", "mountaincar"])
def test_blend_is_the_weighted_mixture(env):
    torch.manual_seed(0)
    agent = BlendRLAgent(get_spec(env))
    logic, neural = real_states(env)
    probs = agent.action_probs(logic, neural)
    w = agent.blend_weights(logic)
    p_n = torch.softmax(agent.net.logits(neural), dim=1)
    p_l = agent.logic_actor(logic)
    expected = w[:, :1] * p_n + w[:, 1:] * p_l
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-6)
    pol = agent.policy(logic, neural)
    assert torch.allclose(pol.logic_weight, w[:, 1])
    ent = -(w * w.log()).sum(1)
    assert torch.allclose(pol.blend_entropy, ent, atol=1e-6)


def test_actor_modes_use_one_actor_alone():
    spec = get_spec("cartpole")
    logic, neural = real_states("cartpole")
    logic_only = BlendRLAgent(spec, actor_mode="logic")
    assert torch.allclose(logic_only.action_probs(logic, neural), logic_only.logic_actor(logic), atol=1e-6)
    assert torch.all(logic_only.policy(logic, neural).logic_weight == 1.0)
    neural_only = BlendRLAgent(spec, actor_mode="neural")
    assert torch.allclose(neural_only.action_probs(logic, neural),
                          torch.softmax(neural_only.net.logits(neural), 1), atol=1e-6)
    assert torch.all(neural_only.policy(logic, neural).logic_weight == 0.0)


def test_neural_blender_and_gumbel():
    spec = get_spec("mountaincar")
    logic, neural = real_states("mountaincar")
    agent = BlendRLAgent(spec, blender_mode="neural", blend_function="gumbel_softmax")
    agent.train()
    w = agent.blend_weights(logic)
    assert torch.allclose(w.sum(1), torch.ones(len(w)), atol=1e-6)
    agent.eval()  # evaluation uses the plain softmax: deterministic
    assert torch.equal(agent.blend_weights(logic), agent.blend_weights(logic))


def test_log_prob_matches_probs_and_gradients_reach_every_group():
    spec = get_spec("cartpole")
    agent = BlendRLAgent(spec)
    logic, neural = real_states("cartpole")
    actions = torch.tensor([0, 1, 0, 1, 1, 0])
    lp = agent.log_prob(logic, neural, actions)
    assert torch.allclose(lp.exp(), agent.action_probs(logic, neural).gather(1, actions[:, None]).squeeze(1))
    (-lp.sum()).backward()
    groups = agent.optimizer_param_groups({"neural": 1e-3, "logic": 1e-2, "blender": 1e-1})
    assert [g["name"] for g in groups] == ["neural", "logic", "blender"]
    for g in groups:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g["params"]), g["name"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(agent.parameters()))


def test_invalid_modes_are_rejected():
    with pytest.raises(ValueError, match="actor_mode"):
        BlendRLAgent(get_spec("cartpole"), actor_mode="both")


def test_neural_agent_frames_are_uint8_scaled():
    spec = get_spec("seaquest")
    agent = NeuralAgent(spec)
    frames = torch.randint(0, 256, (2, *spec.neural_shape), dtype=torch.uint8)
    step = agent.get_action_and_value(torch.zeros(2, *spec.logic_shape), frames)
    assert step.action.shape == (2,) and step.value.shape == (2,)
    assert agent.action_probs(torch.zeros(2, *spec.logic_shape), frames).shape == (2, spec.n_actions)


@pytest.mark.parametrize("env", ["cartpole", "seaquest"])
def test_action_and_value_match_torch_categorical_and_one_trunk_pass(env):
    """``get_action_and_value`` gives what ``torch.distributions.Categorical`` gives (same samples
    from the same seed, log-probabilities, entropies) and the value of ``get_value``."""
    torch.manual_seed(0)
    spec = get_spec(env)
    logic, neural = real_states(env, 4)
    for agent in (NeuralAgent(spec), BlendRLAgent(spec)):
        if spec.is_image:  # the shared CNN trunk runs once per call
            calls = []
            agent.net.trunk.register_forward_hook(lambda *_: calls.append(1))
            with torch.no_grad():
                agent.get_action_and_value(logic, neural)
            assert len(calls) == 1
        with torch.no_grad():
            log_probs = agent.policy(logic, neural).log_probs
            dist = torch.distributions.Categorical(logits=log_probs)
            torch.manual_seed(1)
            expected = dist.sample()
            torch.manual_seed(1)
            step = agent.get_action_and_value(logic, neural)
            assert torch.equal(step.action, expected)
            assert torch.allclose(step.log_prob, dist.log_prob(expected), atol=1e-6)
            assert torch.allclose(step.entropy, dist.entropy(), atol=1e-6)
            assert torch.allclose(step.value, agent.get_value(logic, neural), atol=1e-6)
            given = torch.arange(4) % spec.n_actions
            scored = agent.get_action_and_value(logic, neural, given)
            assert torch.equal(scored.action, given)
            assert torch.allclose(scored.log_prob, dist.log_prob(given), atol=1e-6)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile needs a C++ compiler")
def test_compiled_logic_gives_the_eager_results_and_gradients():
    """``compile_logic`` (torch.compile of the logic actor, blender and mixture) changes nothing but
    speed: the same distribution, blend statistics and gradients as the eager agent, at batch 1 and
    at another batch size, with and without gradients."""
    torch._dynamo.reset()
    spec = get_spec("seaquest")
    eager = BlendRLAgent(spec)
    compiled = BlendRLAgent(spec, compile_logic=True)
    compiled.load_state_dict(eager.state_dict())
    logic, neural = real_states("seaquest", 5)
    with torch.no_grad():
        for batch in (1, 5):
            a, b = eager.policy(logic[:batch], neural[:batch]), compiled.policy(logic[:batch], neural[:batch])
            for x, y in zip(a, b):
                assert torch.allclose(x, y, atol=1e-5)
    actions = torch.tensor([0, 2, 5, 1, 17])
    for agent in (eager, compiled):
        agent.log_prob(logic, neural, actions).sum().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name
    with pytest.raises(ValueError, match="logic state must have shape"):
        compiled.policy(logic[:, :3], neural)


def test_state_dicts_of_the_separate_reasoner_layout_still_load():
    """Checkpoints written when the actor and the logic blender had a reasoner each name the clause
    weights ``logic_actor.reasoner.raw_weights`` and ``blender.reasoner.raw_weights``."""
    spec = get_spec("seaquest")
    saved = BlendRLAgent(spec)
    with torch.no_grad():
        for w in saved.logic_actor.reasoner.raw_weights:
            w.uniform_(-2.0, 2.0)
    old = saved.state_dict()
    old["logic_actor.reasoner.raw_weights"] = old.pop("logic_actor.reasoner.raw_weights.0")
    old["blender.reasoner.raw_weights"] = old.pop("logic_actor.reasoner.raw_weights.1")
    loaded = BlendRLAgent(spec)
    loaded.load_state_dict(old)
    for a, b in zip(saved.logic_actor.reasoner.raw_weights, loaded.logic_actor.reasoner.raw_weights):
        assert torch.equal(a, b)
    assert loaded.program_text() == saved.program_text()


def test_float64_states_zero_blend_weights_and_fact_only_rule_sets(tmp_path):
    """Edge cases of the blended policy: float64 logic states give float64 probabilities equal to
    float32 ones; a blend weight of exactly 0 leaves every gradient finite; rule sets made of facts
    (no valuation atom at all) evaluate to the fact weights."""
    from blendrl.agents.blendrl import NeuralBlender
    from blendrl.logic import LogicActor, LogicBlender, build_rule_set
    torch.manual_seed(0)
    spec = get_spec("seaquest")
    agent = BlendRLAgent(spec)
    logic, neural = real_states("seaquest", 3)
    with torch.no_grad():
        p32 = agent.action_probs(logic, neural)
        p64 = agent.action_probs(logic.double(), neural)
    assert p64.dtype == torch.float64 and torch.allclose(p32.double(), p64, atol=1e-5)
    neural_blend = BlendRLAgent(spec, blender_mode="neural")
    assert isinstance(neural_blend.blender, NeuralBlender)
    with torch.no_grad():
        neural_blend.blender.out.bias.copy_(torch.tensor([200.0, -200.0]))  # w_logic = 0 exactly
    pol = neural_blend.policy(logic, neural)
    assert torch.all(pol.logic_weight == 0)
    (pol.log_probs.sum() + pol.blend_entropy.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in neural_blend.parameters() if p.grad is not None)
    folder = tmp_path / "facts"
    folder.mkdir()
    files = {"preds.txt": "noop:0\n", "neural_preds.txt": "", "clauses.txt": "noop.\n",
             "blender_clauses.txt": "neural_agent.\nlogic_agent.\n"}
    for name, text in files.items():
        (folder / name).write_text(text)
    rule_set = build_rule_set(folder, spec, {})
    with torch.no_grad():
        actor = LogicActor(rule_set, with_blender=True)
        assert torch.allclose(actor.action_values(logic), torch.full((3, 1), 0.98))
        _, blend = actor.with_blend_values(logic)
        assert torch.allclose(blend, torch.full((3, 2), 0.98))
        assert torch.allclose(LogicBlender(rule_set)(logic), torch.full((3, 2), 0.98))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("env", ["cartpole", "seaquest", "kangaroo"])
def test_blendrl_agent_runs_on_cuda_as_on_cpu(env):
    """Constants of the valuation functions are 0-dim CPU tensors; they must work on CUDA too."""
    spec = get_spec(env)
    agent = BlendRLAgent(spec)
    logic, neural = real_states(env, 4)
    with torch.no_grad():
        cpu = agent.action_probs(logic, neural)
        gpu = agent.to("cuda").action_probs(logic.cuda(), neural.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)


# ------------------------------------------------------------------------------------------------
# the BlendRL reference's choices (soft OR and clause weights: tests/test_logic_semantics.py)


@pytest.mark.parametrize("env", ["mountaincar", "kangaroo"])
def test_blended_critic_is_w_n_v_neural_plus_w_l_v_logic(env):
    """``critic="blended"``: V = w_n V_neural(neural) + w_l V_logic(logic) with the policy's blend
    weights, in every call that returns a value; the logic / neural actor modes use V_logic /
    V_neural alone; the value's gradient reaches both critics and the blender."""
    torch.manual_seed(0)
    spec = get_spec(env)
    logic, neural = real_states(env, 4)
    agent = BlendRLAgent(spec, critic="blended")
    with torch.no_grad():  # a non-zero logic critic, so that the blend shows
        agent.logic_critic.head.out.bias.fill_(3.0)
    w = agent.blend_weights(logic)
    v_n, v_l = agent.net.value(neural), agent.logic_critic(logic)
    expected = w[:, 0] * v_n + w[:, 1] * v_l
    assert not torch.allclose(v_n, v_l) and (w[:, 1] > 0).all() and (w[:, 0] > 0).all()
    assert torch.allclose(agent.get_value(logic, neural), expected, atol=1e-5)
    assert torch.allclose(agent.policy_and_value(logic, neural)[1], expected, atol=1e-5)
    assert torch.allclose(agent.get_action_and_value(logic, neural).value, expected, atol=1e-5)
    agent.get_value(logic, neural).sum().backward()
    assert agent.logic_critic.head.out.weight.grad.abs().sum() > 0
    critic = agent.net.critic_head if spec.is_image else agent.net.critic
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    assert agent.logic_actor.reasoner.raw_weights[1].grad.abs().sum() > 0  # the blender, via w
    groups = agent.optimizer_param_groups({"neural": 1e-3, "logic": 1e-2, "blender": 1e-1})
    assert all(any(p is q for q in groups[0]["params"]) for p in agent.logic_critic.parameters())
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(agent.parameters()))
    for mode, only in (("logic", agent.logic_critic), ("neural", None)):
        single = BlendRLAgent(spec, critic="blended", actor_mode=mode)
        single.load_state_dict(agent.state_dict())
        want = single.logic_critic(logic) if only is not None else single.net.value(neural)
        assert torch.allclose(single.get_value(logic, neural), want, atol=1e-6)
        assert torch.allclose(single.policy_and_value(logic, neural)[1], want, atol=1e-6)
    plain = BlendRLAgent(spec)
    assert plain.logic_critic is None
    assert torch.allclose(plain.get_value(logic, neural), plain.net.value(neural))


def test_reduced_logic_action_set_in_the_agent():
    """``logic_actions="rules"``: MountainCar's default rules name left and right only, so the
    logic actor gives noop probability 0; blended, noop keeps the neural actor's share."""
    torch.manual_seed(0)
    spec = get_spec("mountaincar")
    logic, neural = real_states("mountaincar", 6)
    noop = spec.action_names.index("noop")
    hybrid = BlendRLAgent(spec, logic_actions="rules")
    p_l = hybrid.logic_actor(logic)
    assert torch.all(p_l[:, noop] == 0) and torch.allclose(p_l.sum(1), torch.ones(6), atol=1e-6)
    w = hybrid.blend_weights(logic)
    p_n = torch.softmax(hybrid.net.logits(neural), dim=1)
    assert torch.allclose(hybrid.action_probs(logic, neural)[:, noop], w[:, 0] * p_n[:, noop], atol=1e-6)
    logic_only = BlendRLAgent(spec, actor_mode="logic", logic_actions="rules")
    torch.manual_seed(1)
    step = logic_only.get_action_and_value(logic.repeat(200, 1, 1), neural.repeat(200, 1))
    assert (step.action != noop).all() and torch.isfinite(step.entropy).all()
    assert torch.isfinite(logic_only.log_prob(logic, neural, torch.full((6,), noop))).all()
    assert "logic_actions=rules" in logic_only.program_text().splitlines()[0]


def test_program_text_starts_with_the_semantics():
    agent = BlendRLAgent(get_spec("cartpole"), soft_or="logsumexp", clause_weights="softmax",
                         critic="blended", logic_actions="rules")
    lines = agent.program_text().splitlines()
    assert lines[0] == "# semantics: soft_or=logsumexp clause_weights=softmax critic=blended logic_actions=rules"
    assert lines[1] == "# actor"
    assert BlendRLAgent(get_spec("cartpole")).program_text().splitlines()[0] == \
        "# semantics: soft_or=boltzmann clause_weights=sigmoid critic=neural logic_actions=all"
    for name, bad in (("soft_or", "max"), ("clause_weights", "relu"), ("critic", "q"),
                      ("logic_actions", "some")):
        with pytest.raises(ValueError, match=f"unknown {name} '{bad}'"):
            BlendRLAgent(get_spec("cartpole"), **{name: bad})


def test_run_json_records_the_semantics_and_the_checkpoint_rebuilds_the_agent(tmp_path):
    """A real training process with the reference's choices: run.json records them (as it records
    every Args field), the saved agent loads into an agent built with them, and a bad choice is
    exit status 2 before any work."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    options = ["--soft_or", "logsumexp", "--clause_weights", "softmax", "--critic", "blended",
               "--logic_actions", "rules"]
    r = subprocess.run([sys.executable, str(root / "train_blenderl.py"), "--env", "mountaincar",
                        "--total_timesteps", "512", "--num_steps", "64", "--intervals", "1",
                        "--eval_episodes", "1", "--run_id", "sem", "--runs_dir", str(tmp_path / "runs"),
                        *options], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    args = json.loads((tmp_path / "runs" / "sem" / "run.json").read_text())["args"]
    assert {k: args[k] for k in ("soft_or", "clause_weights", "critic", "logic_actions")} == \
        {"soft_or": "logsumexp", "clause_weights": "softmax", "critic": "blended", "logic_actions": "rules"}
    ckpt = torch.load(tmp_path / "runs" / "sem" / "checkpoints" / "latest.pt", weights_only=False)
    agent = BlendRLAgent(get_spec("mountaincar"), soft_or="logsumexp", clause_weights="softmax",
                         critic="blended", logic_actions="rules")
    agent.load_state_dict(ckpt["agent"])
    with pytest.raises(RuntimeError):  # sigmoid weights and no logic critic: another agent
        BlendRLAgent(get_spec("mountaincar")).load_state_dict(ckpt["agent"])
    bad = subprocess.run([sys.executable, str(root / "train_blenderl.py"), "--soft_or", "max",
                          "--runs_dir", str(tmp_path / "runs")], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "soft" in bad.stderr.lower()
    assert not (tmp_path / "runs").joinpath("bad").exists()


def test_offline_blend_entropy_bonus_is_in_the_actor_loss():
    """IQL's actor loss with ``blend_ent_coef`` c: -(AWR weight * log pi(a|s)).mean() - c * mean
    blend entropy; the gradients the trainer leaves equal those of that loss computed here, and c
    = 0 is the plain AWR loss."""
    from types import SimpleNamespace

    from blendrl.algos.iql import IQLConfig, IQLTrainer, awr_weights
    from blendrl.offline import BlendRLOfflineArgs, iql_config

    torch.manual_seed(0)
    spec = get_spec("mountaincar")
    logic, neural = real_states("mountaincar", 8)
    batch = SimpleNamespace(logic_state=logic, neural_state=neural)
    action = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    q, v = torch.randn(8), torch.randn(8)
    lrs = {"neural": 1e-3, "logic": 1e-3, "blender": 1e-3}
    grads = {}
    for coef in (0.0, 0.5):
        agent, reference = BlendRLAgent(spec), BlendRLAgent(spec)
        reference.load_state_dict(agent.state_dict())
        config = IQLConfig(actor_lrs=lrs, blend_ent_coef=coef)
        trainer = IQLTrainer.for_spec(agent, spec, config)
        trainer._update_actor(batch, neural, action, q, v)
        pol = reference.policy(logic, neural)
        log_prob = pol.log_probs.gather(1, action[:, None]).squeeze(1)
        loss = -(awr_weights(q, v, config.beta, config.max_weight) * log_prob).mean()
        loss = loss - coef * pol.blend_entropy.mean()
        loss.backward()
        for (name, p), r in zip(agent.named_parameters(), reference.parameters()):
            assert (p.grad is None) == (r.grad is None), name
            if p.grad is not None:
                assert torch.allclose(p.grad, r.grad, atol=1e-6), name
        grads[coef] = agent.logic_actor.reasoner.raw_weights[1].grad.clone()
    assert not torch.allclose(grads[0.0], grads[0.5])  # the bonus moves the blender
    with pytest.raises(ValueError, match="blend_ent_coef"):
        IQLConfig(blend_ent_coef=-0.1)
    neural_trainer = IQLTrainer.for_spec(NeuralAgent(spec), spec, IQLConfig(blend_ent_coef=0.5))
    neural_trainer._update_actor(batch, neural, action, q, v)  # no blend weights: the AWR loss alone
    args = BlendRLOfflineArgs(dataset_run_id="x", offline_blend_ent_coef=0.25)
    assert iql_config(args, args).blend_ent_coef == 0.25
    assert BlendRLOfflineArgs(dataset_run_id="x").offline_blend_ent_coef == 0.0


@pytest.mark.parametrize("env", ["mountaincar", "seaquest"])
def test_neural_blender_reading_the_neural_state(env):
    """``neural_blender_input="neural"``: the neural blender's logits come from a network of its own
    on the neural state (a Nature CNN on frames), not from the logic state, in the policy and the
    value alike; its gradient reaches it through the blend."""
    torch.manual_seed(0)
    spec = get_spec(env)
    logic, neural = real_states(env, 3)
    agent = BlendRLAgent(spec, blender_mode="neural", neural_blender_input="neural", critic="blended")
    assert agent.blender.encoder is not agent.net and \
        type(agent.blender.encoder).__name__ == ("NatureCNN" if spec.is_image else "MLPEncoder")
    with torch.no_grad():
        agent.blender.out.weight.normal_(0.0, 0.5)
    w = torch.softmax(agent.blender(neural), dim=1)
    assert torch.allclose(agent.blend_weights(logic, neural), w, atol=1e-6)
    pol, value = agent.policy_and_value(logic, neural)
    assert torch.allclose(pol.logic_weight, w[:, 1], atol=1e-6)
    expected = w[:, 0] * agent.net.value(neural) + w[:, 1] * agent.logic_critic(logic)
    assert torch.allclose(value, expected, atol=1e-5)
    assert torch.allclose(agent.get_value(logic, neural), expected, atol=1e-5)
    changed = logic.clone()
    changed[:, :, 1:] += 7.0  # the logic state does not reach this blender
    assert torch.allclose(agent.blend_weights(changed, neural), w, atol=1e-6)
    agent.log_prob(logic, neural, torch.zeros(3, dtype=torch.long)).sum().backward()
    assert agent.blender.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reads the neural state"):
        agent.blend_weights(logic)
    assert "neural_blender_input=neural" in agent.program_text().splitlines()[0]
