"""The patch networks: a compact CNN and a ResNet, both dense-exact (see :mod:`pipeline.models.deep`).

Only valid (unpadded) 3x3 convolutions, batch norm, ReLU and 1x1 convolutions, no pooling
and no stride: a ``k x k`` patch collapses to ``1 x 1``, and the same network over a block
gives every pixel's per-patch output at once.

How ``k`` maps to depth (``L = (k - 1) / 2`` valid 3x3 convolutions)
------------------------------------------------------------------
* CNN: ``L`` layers of 3x3 conv + BN + ReLU with ``channels`` filters, then
  dropout and a 1x1 conv head. ``k = 13`` -> 6 conv layers. ``k = 1`` -> one
  1x1 conv + BN + ReLU layer (no spatial context).
* ResNet: a stem, then ``L // 2`` residual blocks of two valid 3x3 convs
  (each block shrinks by 2 on every side; the skip connection is centre-cropped
  by 2, with a 1x1 conv + BN projection when widths differ), then as many
  *pointwise* residual blocks (two 1x1 convs, identity skip, no shrink) as it
  takes to reach :data:`MIN_RESIDUAL_BLOCKS` blocks, then dropout and a 1x1 conv
  head. The stem is a 3x3 valid conv + BN + ReLU when ``L`` is odd and a 1x1
  conv + BN + ReLU when ``L`` is even, so that ``stem + 2 * (3x3 blocks) = L``:
  the receptive field is exactly ``k`` whatever the blocks. ``k = 13`` -> 1x1 stem +
  3 blocks; ``k = 11`` -> 3x3 stem + 2 blocks; ``k = 9`` -> 1x1 stem + 2 blocks;
  ``k = 7`` -> 3x3 stem + one 3x3 block + one pointwise block; ``k = 5`` -> 1x1
  stem + one 3x3 block + one pointwise block; ``k = 3`` -> 3x3 stem + two
  pointwise blocks; ``k = 1`` -> 1x1 stem + two pointwise blocks. So the ResNet
  has skip connections at every patch size and is never the CNN under another
  name (architecture 1, saved by 0.1.x, had no block at ``k <= 3``, where it *was*
  the CNN, and one block at ``k = 5, 7``: ``architecture=1`` builds it to load
  those files). Stochastic depth: block ``i`` of ``N`` (1-based, all blocks)
  keeps its residual branch with probability ``1 - stochastic_depth * i / N``
  per sample in training (scaled by ``1/p`` when kept), and always at eval, so
  inference is exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.core.errors import InputError

__all__ = [
    "ARCHITECTURE",
    "MIN_RESIDUAL_BLOCKS",
    "CompactCNN",
    "PatchResNet",
    "ResidualBlock",
    "fold_batchnorm",
    "randomize_batchnorm",
    "trunk_layers",
]

#: The current network layout (saved with each model; 1 = the layout of 0.1.x, see the module docstring).
ARCHITECTURE = 2
#: Residual blocks a ResNet has at least (architecture 2): pointwise blocks make up what the patch size lacks.
MIN_RESIDUAL_BLOCKS = 2


def trunk_layers(patch_size: int) -> int:
    """Number of valid 3x3 convolutions that collapse a ``patch_size`` patch to 1 x 1."""
    if patch_size < 1 or patch_size % 2 == 0:
        raise InputError(f"patch.size: must be a positive odd number for the deep models, got {patch_size}")
    return (patch_size - 1) // 2


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CompactCNN(nn.Module):
    """``L = (k-1)/2`` valid 3x3 conv + BN + ReLU layers, dropout, 1x1 conv head."""

    def __init__(self, bands: int, n_classes: int, patch_size: int, channels: int = 64, dropout: float = 0.0):
        super().__init__()
        depth = trunk_layers(patch_size)
        layers: list[nn.Module] = []
        if depth == 0:
            layers += _conv_bn_relu(bands, channels, 1)
        cin = bands
        for _ in range(depth):
            layers += _conv_bn_relu(cin, channels, 3)
            cin = channels
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(channels, n_classes, 1)
        self.shrink = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.trunk(x)))


class ResidualBlock(nn.Module):
    """Two valid ``kernel x kernel`` convs with BN (3: shrinks by 2 on every side; 1: pointwise);
    the skip is centre-cropped to match (1x1 projection if widths differ).

    ``survival`` < 1 enables stochastic depth in training: per sample the residual branch is
    kept with probability ``survival`` and scaled by ``1 / survival``; at eval it is always kept.
    """

    def __init__(self, cin: int, cout: int, survival: float = 1.0, kernel: int = 3):
        super().__init__()
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 1 or 3, got {kernel}")
        self.crop = kernel - 1  # two valid convs of this kernel shrink each side by this much
        self.conv1 = nn.Conv2d(cin, cout, kernel, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else nn.Identity()
        )
        self.survival = float(survival)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        c = self.crop
        skip = self.proj(x[:, :, c:-c, c:-c] if c else x)
        if self.training and self.survival < 1.0:
            keep = torch.empty((x.shape[0], 1, 1, 1), device=x.device, dtype=branch.dtype).bernoulli_(self.survival)
            branch = branch * keep / self.survival
        return F.relu(skip + branch)


class PatchResNet(nn.Module):
    """Stem (3x3 valid when ``L`` is odd, else 1x1), ``L // 2`` 3x3 residual blocks, pointwise
    residual blocks up to :data:`MIN_RESIDUAL_BLOCKS` (``architecture`` 2), dropout, 1x1 head.

    ``widths`` (one per block, 3x3 blocks first) defaults to ``channels`` for every block.
    """

    def __init__(
        self,
        bands: int,
        n_classes: int,
        patch_size: int,
        channels: int = 64,
        dropout: float = 0.0,
        stochastic_depth: float = 0.0,
        widths: list[int] | None = None,
        architecture: int = ARCHITECTURE,
    ):
        super().__init__()
        if architecture not in (1, 2):
            raise ValueError(f"architecture must be 1 or 2, got {architecture}")
        depth = trunk_layers(patch_size)
        kernels = [3] * (depth // 2)
        if architecture >= 2:
            kernels += [1] * max(0, MIN_RESIDUAL_BLOCKS - len(kernels))
        n_blocks = len(kernels)
        widths = list(widths) if widths is not None else [channels] * n_blocks
        if len(widths) != n_blocks:
            raise ValueError(f"widths must have {n_blocks} entries for patch size {patch_size}")
        stem_kernel = 3 if depth % 2 else 1
        self.stem = nn.Sequential(*_conv_bn_relu(bands, channels, stem_kernel))
        blocks = []
        cin = channels
        for i, (w, kernel) in enumerate(zip(widths, kernels)):
            survival = 1.0 - stochastic_depth * (i + 1) / n_blocks
            blocks.append(ResidualBlock(cin, w, survival, kernel))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(cin, n_classes, 1)
        self.shrink = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.blocks(self.stem(x))))


def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (for tests/benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.running_mean is None or m.running_var is None:
                    raise ValueError(f"{type(m).__name__} tracks no running statistics (track_running_stats=False)")
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return net


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d that feeds it (in place; returns ``net``).

    Handles the ``Sequential`` conv/BN pairs of both networks and the ``conv1/bn1``,
    ``conv2/bn2`` pairs of :class:`ResidualBlock`; the BN becomes an identity.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for mod in list(net.modules()):
        if isinstance(mod, nn.Sequential):
            kids = list(mod._modules.items())
            for (na, a), (nb, b) in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    mod._modules[na] = fuse_conv_bn_eval(a, b)
                    mod._modules[nb] = nn.Identity()
        elif isinstance(mod, ResidualBlock):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                if isinstance(getattr(mod, bn), nn.BatchNorm2d):
                    setattr(mod, conv, fuse_conv_bn_eval(getattr(mod, conv), getattr(mod, bn)))
                    setattr(mod, bn, nn.Identity())
    return net
