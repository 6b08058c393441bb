"""The IQL step's device path (issue 29): the compiled step (one graph, every network in it, the
same losses as eager mode; CUDA graphs on a GPU), no host sync in a step, Adam's step counts on
the CPU after a resume, the CUDA RNG state of the job's device only, BlendRL's fixed blend weights
made once, and the TF32 switches of ``--precision``.

What needs a GPU is marked ``cuda`` and skipped without one; each has a CPU counterpart through a
seam (a recording torch.compile backend, counted host reads, mocked ``torch.cuda``).
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from blendrl.agents.factory import BlendRLFields, build_agent, learning_rates
from blendrl.algos import optim
from blendrl.algos.iql import IQLConfig, IQLTrainer
from blendrl.algos.precision import set_tf32
from blendrl.envs import get_spec
from dataset_utils import Batch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

COMPILED_RTOL, COMPILED_ATOL = 1e-4, 1e-5
"""Compiled (inductor) against eager metrics over 50 steps on a CPU (cartpole, batch 32): measured
at most 3.6e-7 absolute, 2.8e-6 relative, under 0.3% of this tolerance (float32 rounding; the
fused kernels round in another order)."""
CUDA_GRAPH_RTOL, CUDA_GRAPH_ATOL = 1e-3, 1e-5
"""The same on a GPU under CUDA graphs (inductor's GPU kernels reduce in other orders and the
differences compound over 50 steps; not measured yet)."""


@pytest.fixture(autouse=True)
def _one_thread_and_tf32_restored():
    threads = torch.get_num_threads()
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _batches(spec, n: int, size: int, seed: int = 3) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)

    def neural():
        if spec.is_image:
            return torch.randint(0, 256, (size, *spec.neural_shape), generator=g, dtype=torch.uint8)
        return torch.randn(size, *spec.neural_shape, generator=g)

    return [Batch(torch.rand(size, *spec.logic_shape, generator=g), neural(),
                  torch.randint(0, spec.n_actions, (size,), generator=g), torch.randn(size, generator=g),
                  torch.rand(size, *spec.logic_shape, generator=g), neural(),
                  (torch.rand(size, generator=g) < 0.1).float(), torch.zeros(size),
                  (torch.rand(size, generator=g) < 0.1).float())
            for _ in range(n)]


def _trainer(env: str, agent: str, device="cpu", precision: str = "fp32", **blend) -> IQLTrainer:
    spec = get_spec(env)
    fields = BlendRLFields(**blend) if agent == "blendrl" else None
    torch.manual_seed(0)
    actor = build_agent(spec, fields, 16).to(device)
    config = IQLConfig(actor_lrs=learning_rates(3e-4, fields), precision=precision)
    return IQLTrainer.for_spec(actor, spec, config, device=device, hidden=16)


def _run(trainer: IQLTrainer, batches: list[Batch], steps: int, device="cpu") -> np.ndarray:
    """``steps`` steps; their metrics are kept (on the device) and read at the end."""
    on_device = [Batch(*(x.to(device) for x in b)) for b in batches]
    stats = [trainer.update_stats(on_device[i % len(on_device)]) for i in range(steps)]
    return torch.stack(stats).cpu().numpy()


def _actor_pass_params(actor) -> list[torch.Tensor]:
    """The parameters of the actor's CNN / MLP pass (not the PPO critic head IQL does not use)."""
    net = actor.net
    mods = [net.trunk, net.actor_head] if net.shared else [net.actor]
    return [p for m in mods for p in m.parameters()]


class RecordingBackend:
    """A torch.compile backend that records each graph and its inputs and runs it as traced."""

    def __init__(self):
        self.graphs: list[tuple[torch.fx.GraphModule, list]] = []

    def __call__(self, gm, example_inputs):
        self.graphs.append((gm, list(example_inputs)))
        return gm.forward

    def inputs(self, i: int) -> set[int]:
        return {id(t) for t in self.graphs[i][1]}


# --------------------------------------------------------------------------- items 1 and 2

@pytest.mark.parametrize("env,agent", [("seaquest", "neural"), ("cartpole", "blendrl")])
def test_the_compiled_step_is_one_graph_of_every_network_the_actor_included(env, agent):
    """``fullgraph``: nothing of the step can fall back to eager; the graph's inputs are every
    parameter of V, both Qs, both target Qs and the actor's pass (its CNN on frames)."""
    trainer = _trainer(env, agent)
    backend = RecordingBackend()
    trainer.compile("default", backend=backend)
    batches = _batches(get_spec(env), 2, 4)
    _run(trainer, batches, 3)
    assert len(backend.graphs) == 1  # one graph, compiled once, for three steps
    inputs = backend.inputs(0)
    for name in ("value", "q1", "q2", "q1_target", "q2_target"):
        assert all(id(p) in inputs for p in getattr(trainer, name).parameters()), name
    assert all(id(p) in inputs for p in _actor_pass_params(trainer.actor))
    if agent == "blendrl":  # the clause weights and the blender too
        assert all(id(p) in inputs for p in trainer.actor.logic_actor.parameters())


def test_the_evaluation_runs_the_compiled_actor_pass():
    """Evaluation reaches the actor by ``net.logits`` (not ``net(x)``, all ``nn.Module.compile``
    covers): after ``compile`` that pass is a compiled graph of the actor's CNN, compiled once and
    giving the eager actions."""
    spec = get_spec("seaquest")
    trainer = _trainer("seaquest", "neural")
    batch = _batches(spec, 1, 3)[0]
    eager = trainer.actor.act(batch.logic_state, batch.neural_state, deterministic=False,
                              uniforms=torch.full((3,), 0.5))
    backend = RecordingBackend()
    trainer.compile("default", backend=backend)
    trainer.actor.eval()
    for _ in range(2):
        got = trainer.actor.act(batch.logic_state, batch.neural_state, deterministic=False,
                                uniforms=torch.full((3,), 0.5))
    assert len(backend.graphs) == 1
    assert all(id(p) in backend.inputs(0) for p in _actor_pass_params(trainer.actor))
    assert torch.equal(got[0], eager[0])
    # ... and value and forward (PPO's passes) are compiled as well
    trainer.actor.get_value(batch.logic_state, batch.neural_state)
    trainer.actor.policy_and_value(batch.logic_state, batch.neural_state)
    assert len(backend.graphs) == 3


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["neural", "blendrl"])
def test_compiled_losses_equal_eager_ones_over_50_steps_on_cpu(agent):
    """Inductor (the default mode; a C++ compiler is needed) against eager, every metric of every
    step within :data:`COMPILED_RTOL` / :data:`COMPILED_ATOL`."""
    batches = _batches(get_spec("cartpole"), 4, 32)
    eager = _run(_trainer("cartpole", agent), batches, 50)
    trainer = _trainer("cartpole", agent)
    trainer.compile("default")
    compiled = _run(trainer, batches, 50)
    np.testing.assert_allclose(compiled, eager, rtol=COMPILED_RTOL, atol=COMPILED_ATOL)
    assert not np.allclose(eager[0], eager[-1])  # it trained
    # the step's parameters were trained alike (the eager run's trainer is rebuilt to compare)
    reference = _trainer("cartpole", agent)
    _run(reference, batches, 50)
    for a, b in zip(trainer.actor.parameters(), reference.actor.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_compile_rejects_an_unknown_mode_and_off_stays_eager():
    trainer = _trainer("cartpole", "neural")
    with pytest.raises(ValueError, match="compile mode"):
        trainer.compile("max")
    trainer.compile("off")
    assert trainer.compile_mode == "off" and trainer._compiled_step_losses is None


@cuda
@pytest.mark.parametrize("env,agent", [("seaquest", "neural"), ("cartpole", "blendrl")])
def test_cuda_graph_steps_equal_eager_ones_over_50_steps(env, agent):
    """``reduce-overhead``: the step's forward and backward replayed as CUDA graphs. The metrics of
    all 50 steps are kept on the device until the end (a graph output read after the next replay
    would raise), and an evaluation-style action pass (a graph of its own) runs between steps."""
    dev = torch.device("cuda")
    spec = get_spec(env)
    batches = [Batch(*(x.to(dev) for x in b)) for b in _batches(spec, 4, 32)]
    probe = batches[0]
    runs = []
    for mode in ("off", "reduce-overhead"):
        trainer = _trainer(env, agent, dev)
        trainer.compile(mode)
        stats = []
        for i in range(50):
            stats.append(trainer.update_stats(batches[i % 4]))
            if i % 10 == 9:
                trainer.actor.eval()
                trainer.actor.act(probe.logic_state, probe.neural_state)
                trainer.actor.train()
        runs.append(torch.stack(stats).cpu().numpy())
    np.testing.assert_allclose(runs[1], runs[0], rtol=CUDA_GRAPH_RTOL, atol=CUDA_GRAPH_ATOL)


@cuda
@pytest.mark.parametrize("env,mode", [("seaquest", "off"), ("seaquest", "default"),
                                      ("seaquest", "reduce-overhead"), ("cartpole", "off")])
def test_cuda_steps_make_no_host_sync(env, mode):
    dev = torch.device("cuda")
    trainer = _trainer(env, "neural", dev)
    trainer.compile(mode)
    batch = Batch(*(x.to(dev) for x in _batches(get_spec(env), 1, 16)[0]))
    for _ in range(4):  # compile, warm up, record
        trainer.update_stats(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.update_stats(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --------------------------------------------------------------------------- host syncs (CPU)

HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
"""Tensor methods that wait for the device when the tensor is on one."""


@pytest.mark.parametrize("agent,precision,backend", [("neural", "fp32", None),
                                                     ("blendrl", "fp32", None),
                                                     ("blendrl", "bf16", None),
                                                     ("neural", "fp32", "aot_eager")])
def test_a_step_reads_nothing_on_the_host_but_adams_cpu_step_counts(monkeypatch, agent, precision,
                                                                    backend):
    """Every host read a step makes (counted through wrappers of the Tensor methods that would
    sync on a GPU) is of an Adam step count, which stays on the CPU (see the next test); eager
    and compiled (traced by torch.compile, run without inductor to keep the test fast)."""
    trainer = _trainer("seaquest" if agent == "neural" else "cartpole", agent, precision=precision)
    if backend is not None:
        trainer.compile("default", backend=backend)
    batches = _batches(get_spec("seaquest" if agent == "neural" else "cartpole"), 2, 8)
    trainer.update_stats(batches[0])  # Adam's state exists from here on
    steps = {id(st["step"]) for opt in (trainer.actor_optimizer, trainer.q_optimizer,
                                        trainer.value_optimizer) for st in opt.state.values()}
    reads = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if id(self) not in steps:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    trainer.update_stats(batches[1])
    trainer.update_stats(batches[0])
    assert reads == []
    trainer.update(batches[1])  # the seam sees a read: update() reads the metrics on the host
    monkeypatch.undo()
    assert reads == ["tolist"]


# --------------------------------------------------------------------------- item 4: Adam's steps

def _trained_trainer() -> IQLTrainer:
    trainer = _trainer("cartpole", "neural")
    for b in _batches(get_spec("cartpole"), 2, 8):
        trainer.update_stats(b)
    return trainer


def _adams(trainer: IQLTrainer):
    return trainer.actor_optimizer, trainer.q_optimizer, trainer.value_optimizer


def test_loaded_adam_step_counts_come_back_to_the_cpu(monkeypatch):
    """A checkpoint loaded onto another device (here ``meta``, standing in for a GPU's
    ``map_location``) gives step counts there; ``load_adam_state`` puts them on the CPU with
    their values and leaves the moments where torch puts them (the parameters' device)."""
    trainer = _trained_trainer()
    state = copy.deepcopy(trainer.state_dict())
    values = {}
    for key in ("actor_optimizer", "q_optimizer", "value_optimizer"):
        for st in state[key]["state"].values():
            meta = torch.empty_like(st["step"], device="meta")
            values[id(meta)] = st["step"].item()
            st["step"] = meta
    assert values
    moved = []

    def to_host(step):  # a meta tensor has no values to copy: the seam gives them back
        moved.append(step.device.type)
        return torch.tensor(values[id(step)], dtype=step.dtype)

    monkeypatch.setattr(optim, "_to_host", to_host)
    other = _trainer("cartpole", "neural")
    other.load_state_dict(state)
    assert moved == ["meta"] * len(values)
    for mine, theirs in zip(_adams(other), _adams(trainer)):
        for p, q in zip(mine.state.values(), theirs.state.values()):
            assert p["step"].device.type == "cpu" and torch.equal(p["step"], q["step"])
            assert torch.equal(p["exp_avg"], q["exp_avg"])


def test_cpu_step_counts_are_left_as_they_are():
    trainer = _trained_trainer()
    other = _trainer("cartpole", "neural")
    other.load_state_dict(copy.deepcopy(trainer.state_dict()))
    for mine, theirs in zip(_adams(other), _adams(trainer)):
        for p, q in zip(mine.state.values(), theirs.state.values()):
            assert p["step"].device.type == "cpu" and torch.equal(p["step"], q["step"])


@cuda
def test_cuda_resume_keeps_step_counts_on_the_cpu_and_the_step_sync_free():
    dev = torch.device("cuda")
    trainer = _trained_trainer()
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location=dev, weights_only=True)
    assert state["q_optimizer"]["state"][0]["step"].device.type == "cuda"  # what torch gives
    other = _trainer("cartpole", "neural", dev)
    other.load_state_dict(state)
    for opt in _adams(other):
        assert all(st["step"].device.type == "cpu" for st in opt.state.values())
    batch = Batch(*(x.to(dev) for x in _batches(get_spec("cartpole"), 1, 8)[0]))
    other.update_stats(batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        other.update_stats(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --------------------------------------------------------------------------- item 7: CUDA RNG

class FakeCuda:
    """``torch.cuda`` as seen by blendrl.rng on a machine with ``count`` GPUs (states recorded)."""

    def __init__(self, monkeypatch, count: int, initialized: bool = True):
        self.count, self.set, self.got = count, {}, []
        tc = torch.cuda
        monkeypatch.setattr(tc, "is_available", lambda: count > 0)
        monkeypatch.setattr(tc, "is_initialized", lambda: initialized)
        monkeypatch.setattr(tc, "device_count", lambda: count)
        monkeypatch.setattr(tc, "current_device", lambda: 0)
        monkeypatch.setattr(tc, "memory_reserved", lambda i=None: 1 << 20 if i == count - 1 else 0)
        monkeypatch.setattr(tc, "get_rng_state", self._get)
        monkeypatch.setattr(tc, "set_rng_state", self._set)

        def no(*a, **k):
            raise AssertionError("every visible GPU's state is no longer read or written")

        monkeypatch.setattr(tc, "get_rng_state_all", no)
        monkeypatch.setattr(tc, "set_rng_state_all", no)

    def _get(self, device="cuda"):
        index = device if isinstance(device, int) else torch.device(device).index
        assert index is not None and index < self.count
        self.got.append(index)
        return torch.full((16,), index, dtype=torch.uint8)

    def _set(self, state, device="cuda"):
        assert isinstance(device, int) and device < self.count, device
        self.set[device] = state


def test_a_cpu_jobs_checkpoint_holds_no_cuda_rng_state(monkeypatch):
    """A ``--device cpu`` job on a GPU host neither reads nor initialises CUDA."""
    from blendrl.rng import rng_state

    fake = FakeCuda(monkeypatch, count=2, initialized=False)
    assert "cuda" not in rng_state("cpu")
    assert "cuda" not in rng_state()  # the callers that do not say: CUDA was never initialised
    assert fake.got == []


def test_a_cuda_job_saves_its_own_devices_rng_state_only(monkeypatch):
    from blendrl.rng import rng_state

    fake = FakeCuda(monkeypatch, count=3)
    state = rng_state("cuda:1")
    assert list(state["cuda"]) == [1] and fake.got == [1]
    assert list(rng_state("cuda")["cuda"]) == [0]  # the current device
    assert list(rng_state()["cuda"]) == [2]  # not said: the GPUs this process holds memory on
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert list(back["cuda"]) == [1] and torch.equal(back["cuda"][1], state["cuda"][1])


def test_restoring_more_cuda_states_than_gpus_restores_those_that_exist(monkeypatch, capsys):
    from blendrl.rng import rng_state, set_rng_state

    saved = rng_state("cpu")
    old = dict(saved, cuda=[torch.full((16,), i, dtype=torch.uint8) for i in range(4)])  # before
    fake = FakeCuda(monkeypatch, count=2)
    set_rng_state(old)
    assert sorted(fake.set) == [0, 1] and all(int(s[0]) == i for i, s in fake.set.items())
    assert "devices [2, 3] are not restored: this machine shows 2 GPU(s)" in capsys.readouterr().err
    # the new layout: the job's one device, resumed on a machine where it has another index
    fake.set.clear()
    set_rng_state(dict(saved, cuda={3: torch.full((16,), 3, dtype=torch.uint8)}), device="cuda:1")
    assert list(fake.set) == [1] and int(fake.set[1][0]) == 3
    fake.set.clear()
    set_rng_state(dict(saved, cuda={3: torch.zeros(16, dtype=torch.uint8)}), device="cpu")
    assert fake.set == {}  # a CPU job does not touch CUDA
    set_rng_state(dict(saved, cuda={0: torch.zeros(16, dtype=torch.uint8)}))
    assert list(fake.set) == [0]


def test_cuda_rng_states_are_not_restored_without_cuda(monkeypatch):
    from blendrl.rng import rng_state, set_rng_state

    saved = rng_state("cpu")
    fake = FakeCuda(monkeypatch, count=0, initialized=False)
    set_rng_state(dict(saved, cuda=[torch.zeros(16, dtype=torch.uint8)]))
    assert fake.set == {}


@cuda
def test_cuda_rng_round_trip_of_the_jobs_device():
    from blendrl.rng import rng_state, set_rng_state

    dev = torch.device("cuda", torch.cuda.current_device())
    state = rng_state(dev)
    assert list(state["cuda"]) == [dev.index]
    a = torch.rand(5, device=dev)
    set_rng_state(state, device=dev)
    assert torch.equal(torch.rand(5, device=dev), a)


# --------------------------------------------------------------------------- item 8: BlendRL

@pytest.mark.parametrize("actor_mode", ["hybrid", "logic", "neural"])
@pytest.mark.parametrize("blender_mode", ["logic", "neural"])
def test_blendrl_passes_build_no_tensor_from_python_values(monkeypatch, actor_mode, blender_mode):
    """The one-actor modes' fixed blend weights are a buffer made once: a pass builds no tensor
    from Python values (each would be a host-to-device copy on a GPU), and gives the numbers the
    per-pass ``logic.new_tensor([1, 0])`` gave."""
    spec = get_spec("seaquest")
    torch.manual_seed(0)
    agent = build_agent(spec, BlendRLFields(actor_mode=actor_mode, blender_mode=blender_mode), 16)
    b = _batches(spec, 1, 3)[0]
    logic, neural = b.logic_state, b.neural_state
    agent.policy(logic, neural)  # warm-up: constants of the valuation functions are made once
    calls = []

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch, "tensor", counting("torch.tensor", torch.tensor))
    monkeypatch.setattr(torch, "as_tensor", counting("torch.as_tensor", torch.as_tensor))
    monkeypatch.setattr(torch.Tensor, "new_tensor", counting("new_tensor", torch.Tensor.new_tensor))
    pol = agent.policy(logic, neural)
    agent.policy_and_value(logic, neural)
    agent.get_value(logic, neural)
    agent.act(logic, neural)
    agent.get_action_and_value(logic, neural)
    monkeypatch.undo()
    assert calls == []
    if actor_mode != "hybrid":
        fixed = torch.tensor([1.0, 0.0] if actor_mode == "neural" else [0.0, 1.0]).expand(3, 2)
        assert torch.equal(pol.logic_weight, fixed[:, 1])
        assert torch.equal(pol.blend_entropy, torch.special.entr(fixed.clamp_min(1e-12)).sum(dim=1))
        if actor_mode == "neural":
            assert torch.equal(pol.log_probs, torch.log_softmax(agent.net.logits(neural), dim=1))
        assert "_fixed_weights" not in agent.state_dict()  # checkpoints keep their keys
        assert agent.to("meta")._fixed_weights.device.type == "meta"  # moved with the agent


# --------------------------------------------------------------------------- item 9: TF32

def test_precision_sets_the_tf32_switches():
    for precision, on in (("tf32", True), ("fp32", False), ("bf16", False)):
        _trainer("cartpole", "neural", precision=precision)
        assert torch.backends.cudnn.allow_tf32 is on and torch.backends.cuda.matmul.allow_tf32 is on
    with pytest.raises(ValueError, match="precision"):
        set_tf32("fp16")


def test_tf32_is_fp32_on_a_cpu():
    batches = _batches(get_spec("seaquest"), 2, 4)
    fp32 = _run(_trainer("seaquest", "neural", precision="fp32"), batches, 2)
    tf32 = _run(_trainer("seaquest", "neural", precision="tf32"), batches, 2)
    assert np.array_equal(fp32, tf32)


@cuda
def test_cuda_fp32_convolutions_are_not_tf32():
    """On an Ampere or later GPU, ``fp32`` Q values of frames are float64's within float32
    rounding, and ``tf32`` ones (10-bit mantissas in the convolutions and matmuls) are far off."""
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("no TF32 before Ampere")
    dev = torch.device("cuda")
    frames = _batches(get_spec("seaquest"), 1, 16)[0].neural_state.to(dev)
    error = {}
    for precision in ("fp32", "tf32"):
        trainer = _trainer("seaquest", "neural", dev, precision)
        with torch.no_grad():
            got = trainer.q1(frames).double()
            reference = copy.deepcopy(trainer.q1).double()(frames.double() / 255.0)
        error[precision] = ((got - reference).abs().max() / reference.abs().max()).item()
    assert error["fp32"] < 5e-5, error
    assert error["tf32"] > 10 * error["fp32"], error
