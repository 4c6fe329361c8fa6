"""Our two small architectures. Their parameter names follow the public layouts of KAIR's
DnCNN ("model.N") and Real-ESRGAN's SRVGGNetCompact ("body.N"), so checkpoints we train
load in tools that know those layouts (spandrel, chaiNNer) and theirs load in ours."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class DnCNN(nn.Module):
    """Residual denoiser: the network predicts the noise, the output is input minus noise.

    Blind within the noise range it was trained on; no batch norm, so inference on tiles
    and batches of any size gives the same result as on the whole image.
    """

    def __init__(self, channels: int = 3, features: int = 32, layers: int = 15) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError("DnCNN needs at least 3 conv layers")
        modules: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            modules += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU()]
        modules.append(nn.Conv2d(features, channels, 3, padding=1))
        self.model = nn.Sequential(*modules)
        self.layers = layers
        # He initialisation keeps the signal alive through a deep plain ReLU stack (torch's
        # default shrinks it layer by layer, and training then sits at "output = input");
        # a small last layer starts the noise estimate near zero.
        convs = [m for m in self.model if isinstance(m, nn.Conv2d)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        with torch.no_grad():
            convs[-1].weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise: torch.Tensor = self.model(x)
        return x - noise


class CompactSR(nn.Module):
    """VGG-style upscaler working at the input resolution, upsampling once at the end
    (pixel shuffle) on top of a nearest-neighbour copy of the input."""

    def __init__(
        self, scale: int = 2, channels: int = 3, features: int = 32, convs: int = 8
    ) -> None:
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.PReLU(features)]
        for _ in range(convs):
            body += [nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features)]
        body.append(nn.Conv2d(features, channels * scale * scale, 3, padding=1))
        self.body = nn.ModuleList(body)
        self.shuffle = nn.PixelShuffle(scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        upscaled: torch.Tensor = self.shuffle(out)
        return upscaled + base


def receptive_radius(model: nn.Module) -> int:
    """Pixels of context on each side that one output pixel depends on (3x3 convs)."""
    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    return convs
