"""The learners' Adam (blendrl/algos/optim.py): the foreach kernels give torch's per-parameter
Adam's numbers bit for bit, also across a checkpoint written by the per-parameter one."""

from __future__ import annotations

import copy

import torch

from blendrl.agents.networks import NatureCNN, make_value_network
from blendrl.algos.optim import adam, load_adam_state
from blendrl.envs import get_spec


def _networks() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [NatureCNN(4), make_value_network(get_spec("cartpole"))]


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizer.step()


def _everything(params, optimizer) -> list[torch.Tensor]:
    return [p.detach() for p in params] + [t for st in optimizer.state.values()
                                           for t in (st["exp_avg"], st["exp_avg_sq"], st["step"])]


def test_foreach_adam_is_the_per_parameter_adam_bit_for_bit():
    runs = []
    for make in (lambda ps: torch.optim.Adam(ps, lr=3e-4, eps=1e-5, foreach=False),
                 lambda ps: adam(ps, lr=3e-4, eps=1e-5)):
        params = [p for net in _networks() for p in net.parameters()]
        optimizer = make(params)
        on_foreach = len(runs) == 1  # the second optimiser is the project's
        assert all(g["foreach"] is on_foreach for g in optimizer.param_groups)
        _steps(optimizer, params, 12, seed=1)
        runs.append(_everything(params, optimizer))
    loop, foreach = runs
    assert len(loop) == len(foreach) > 10
    assert all(torch.equal(a, b) for a, b in zip(loop, foreach))
    assert not torch.equal(loop[0], [p for p in _networks()[0].parameters()][0])  # they moved


def test_a_per_parameter_checkpoint_resumes_on_foreach_with_the_same_numbers():
    params = [p for net in _networks() for p in net.parameters()]
    old = torch.optim.Adam(params, lr=1e-3)  # as a checkpoint of an earlier version was written
    _steps(old, params, 3, seed=2)
    saved = ([p.detach().clone() for p in params], copy.deepcopy(old.state_dict()))
    assert all(g["foreach"] is None for g in saved[1]["param_groups"])
    _steps(old, params, 4, seed=3)
    expected = _everything(params, old)

    params2 = [p for net in _networks() for p in net.parameters()]
    with torch.no_grad():
        for i, p in enumerate(params2):
            p.copy_(saved[0][i])
    resumed = adam(params2, lr=1e-3)
    load_adam_state(resumed, saved[1])
    assert all(g["foreach"] is True for g in resumed.param_groups)
    _steps(resumed, params2, 4, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(expected, _everything(params2, resumed)))
