"""Network building blocks: CleanRL-style initialisation, MLP and Nature-CNN encoders, and the
critic networks (Q and V) used by IQL, and the logic-state critic of BlendRL's blended critic.

Every network here but :class:`LogicStateValue` takes the **neural state**: a float32 vector, or
uint8 frames ``[4, 84, 84]`` which are scaled to [0, 1] inside the network (the dataset and the
rollout keep them uint8). Frames already scaled by :func:`scale_frames` (a floating tensor) are
taken as they are, so a caller must never hand over unscaled float frames: IQL, whose seven
passes a step read the same two frame batches, scales each batch once (the same numbers in eager
mode; with ``--compile`` on a GPU inductor rewrites ``/ 255`` as ``* (1 / 255)``, so compiled runs
from before this differ from it in the last bit).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blendrl.envs.base import EnvSpec


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant bias, as in CleanRL's PPO."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class OutputLinear(nn.Linear):
    """A network's output layer: float32 even under autocast. With bf16 passes
    (``--precision bf16``) the encoder's features are rounded to bfloat16's 8-bit mantissa, but a
    value near 30 must not be (bfloat16 resolves it only to 0.25, and IQL weighs actions by
    ``exp(beta * (Q - V))``), so Q, V and the logits are computed in float32 from them.
    Without autocast it is ``nn.Linear`` (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def scale_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [0, 1] (``/ 255``), what :class:`NatureCNN` sees."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"scale_frames takes uint8 frames, got {frames.dtype}")
    return frames.float() / 255.0


class NatureCNN(nn.Module):
    """The DQN 'Nature' encoder: frames [B, C, 84, 84] -> [B, 512]; uint8 frames are scaled by
    :func:`scale_frames` here, floating ones must already be (they are used as given)."""

    out_dim = 512

    def __init__(self, in_channels: int):
        super().__init__()
        self.net = nn.Sequential(
            layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU(),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype == torch.uint8:
            return self.net(scale_frames(frames))
        if not frames.is_floating_point():
            raise TypeError(f"NatureCNN takes uint8 frames or frames scaled by scale_frames, got "
                            f"{frames.dtype}")
        return self.net(frames)


class MLPEncoder(nn.Module):
    """Two hidden layers on a flat vector state."""

    def __init__(self, in_dim: int, hidden: int, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.out_dim = hidden
        self.net = nn.Sequential(
            layer_init(nn.Linear(in_dim, hidden)), activation(),
            layer_init(nn.Linear(hidden, hidden)), activation(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1).float())


def make_encoder(spec: EnvSpec, hidden: int = 64, activation: type[nn.Module] = nn.Tanh) -> nn.Module:
    """Nature CNN for frame states, an MLP for vector states. The module has ``out_dim``."""
    if spec.is_image:
        return NatureCNN(spec.neural_shape[0])
    return MLPEncoder(math.prod(spec.neural_shape), hidden, activation)


class Head(nn.Module):
    """An encoder followed by one linear layer: ``forward(neural) -> [B, out]``."""

    def __init__(self, encoder: nn.Module, out: int, std: float):
        super().__init__()
        self.encoder = encoder
        self.out = layer_init(OutputLinear(encoder.out_dim, out), std=std)

    def forward(self, neural: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(neural))


def make_q_network(spec: EnvSpec, hidden: int = 256) -> Head:
    """Q(s, .) for every action: ``[B, n_actions]`` (IQL critic; ReLU MLP as in CORL)."""
    return Head(make_encoder(spec, hidden, nn.ReLU), spec.n_actions, std=1.0)


def make_value_network(spec: EnvSpec, hidden: int = 256) -> nn.Module:
    """V(s): ``[B]`` (IQL value function)."""
    return _Squeeze(Head(make_encoder(spec, hidden, nn.ReLU), 1, std=1.0))


class LogicStateValue(nn.Module):
    """V(logic state): ``[B, n_objects, n_features] -> [B]``, a two-hidden-layer ReLU MLP on the
    flattened logic state -- the logic critic of the BlendRL reference (whose MLP is also ReLU, on
    the raw object features)."""

    def __init__(self, spec: EnvSpec, hidden: int = 64):
        super().__init__()
        n_obj, n_feat = spec.logic_shape
        self.head = Head(MLPEncoder(n_obj * n_feat, hidden, nn.ReLU), 1, std=1.0)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        return self.head(logic).squeeze(-1)


class _Squeeze(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, neural: torch.Tensor) -> torch.Tensor:
        return self.inner(neural).squeeze(-1)
