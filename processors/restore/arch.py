"""Our two small architectures. Their parameter names follow the public layouts of KAIR's
DnCNN ("model.N") and Real-ESRGAN's SRVGGNetCompact ("body.N"), so checkpoints we train
load in tools that know those layouts (spandrel, chaiNNer) and theirs load in ours."""

from __future__ import annotations

import copy

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
        self.channels = channels
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        upscaled: torch.Tensor = self.shuffle(out)
        return upscaled + base

    @property
    def convs(self) -> int:
        """Hidden features-to-features convolutions (the first and the last not counted)."""
        return sum(1 for m in self.body if isinstance(m, nn.Conv2d)) - 2

    def deepened(self, extra: int) -> CompactSR:
        """The same function with `extra` more hidden layers, spread evenly through the stack.

        Each new layer starts as the identity (a 3x3 kernel with only its centre tap, and
        a PReLU of slope one), so the deeper net begins exactly where this one is and
        fine-tuning only has to learn what the added depth is for, not the whole mapping.
        """
        features = self.features
        deeper = CompactSR(self.scale, self.channels, features, self.convs + extra)
        # The hidden (conv, PReLU) pairs, then which of them get a new pair after them.
        pairs = [(self.body[i], self.body[i + 1]) for i in range(2, len(self.body) - 1, 2)]
        after = {round((k + 1) * len(pairs) / extra) - 1 for k in range(extra)}
        layers: list[nn.Module] = [copy.deepcopy(m) for m in self.body[:2]]
        for index, (conv, act) in enumerate(pairs):
            layers += [copy.deepcopy(conv), copy.deepcopy(act)]
            if index in after:
                layers += _identity_pair(features)
        while len(layers) < len(deeper.body) - 1:  # more new layers than old ones
            layers += _identity_pair(features)
        layers.append(copy.deepcopy(self.body[-1]))
        deeper.body = nn.ModuleList(layers)
        return deeper


def _identity_pair(features: int) -> list[nn.Module]:
    conv = nn.Conv2d(features, features, 3, padding=1)
    act = nn.PReLU(features)
    with torch.no_grad():
        nn.init.zeros_(conv.weight)
        if conv.bias is not None:  # always there: made with a bias above
            nn.init.zeros_(conv.bias)
        conv.weight[range(features), range(features), 1, 1] = 1.0
        act.weight.fill_(1.0)
    return [conv, act]


def receptive_radius(model: nn.Module) -> int:
    """Pixels of context on each side that one output pixel depends on (3x3 convs)."""
    if isinstance(model, UNetDenoiser):
        # Its field spans a hundred pixels and more, but the weights far out are small.
        # With 32 px of context, tiles differ from the whole image by half a grey level on
        # average (a few at most, where a tile's stride-2 grid falls differently) and the
        # PSNR is the same to 0.01 dB: no seams to see, so 32 it is.
        return 32
    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    return convs


class _Residual(nn.Module):
    """conv, ReLU, conv, added to the input (KAIR's "res.0"/"res.2" layout, no bias)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.res = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(features, features, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.res(x)
        return out


class UNetDenoiser(nn.Module):
    """A noise-level-aware U-Net denoiser in the parameter layout of KAIR's DRUNet.

    Input: the RGB image plus one channel holding the noise sigma (/255) at each pixel, so
    one network serves every noise level and the caller decides how strong to be. Three
    stride-2 levels do most of the work at a quarter, a sixteenth and a sixty-fourth of
    the pixels: several times the context of a plain stack for a similar cost per pixel.
    No bias and no normalisation, like DRUNet, so tiles and whole images agree.
    """

    def __init__(
        self,
        channels: int = 3,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        blocks: int = 2,
    ) -> None:
        super().__init__()
        if blocks < 2:
            raise ValueError("the DRUNet layout needs at least 2 blocks per level")
        w = widths

        def down(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                *[_Residual(a) for _ in range(blocks)], nn.Conv2d(a, b, 2, stride=2, bias=False)
            )

        def up(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ConvTranspose2d(a, b, 2, stride=2, bias=False),
                *[_Residual(b) for _ in range(blocks)],
            )

        self.m_head = nn.Conv2d(channels + 1, w[0], 3, padding=1, bias=False)
        self.m_down1, self.m_down2, self.m_down3 = (
            down(w[0], w[1]),
            down(w[1], w[2]),
            down(w[2], w[3]),
        )
        self.m_body = nn.Sequential(*[_Residual(w[3]) for _ in range(blocks)])
        self.m_up3, self.m_up2, self.m_up1 = up(w[3], w[2]), up(w[2], w[1]), up(w[1], w[0])
        self.m_tail = nn.Conv2d(w[0], channels, 3, padding=1, bias=False)
        self.widths, self.blocks, self.scale, self.channels = w, blocks, 1, channels
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        self._start_near_identity(channels)

    @torch.no_grad()
    def _start_near_identity(self, channels: int) -> None:
        """DRUNet predicts the clean image itself, not the noise. Starting from "output =
        input" (head copies RGB into its first channels, tail copies them back, every
        branch small) lets a short training learn only the correction."""
        for block in self.modules():
            if isinstance(block, _Residual):
                last = block.res[2]
                assert isinstance(last, nn.Conv2d)
                last.weight.mul_(0.1)
            if isinstance(block, nn.ConvTranspose2d):
                block.weight.mul_(0.1)
        self.m_head.weight[:channels].zero_()
        self.m_tail.weight.mul_(0.01)
        for c in range(channels):
            self.m_head.weight[c, c, 1, 1] = 1.0
            self.m_tail.weight[c, c, 1, 1] = 1.0

    def deepened(self, extra: int) -> UNetDenoiser:
        """The same function with `extra` more residual blocks on every level and in the
        body (the DRUNet layout keeps one block count throughout, and spandrel reads it
        from the body).

        Each new block comes after the level's trained ones, its first conv drawn at
        random and its last conv zero: it adds nothing, so the deeper net begins exactly
        where this one is, and the zero conv still gets a gradient from the first step.
        """
        deeper = UNetDenoiser(self.channels, self.widths, self.blocks + extra)
        with torch.no_grad():
            for block in deeper.modules():
                if isinstance(block, _Residual):
                    last = block.res[2]
                    assert isinstance(last, nn.Conv2d)
                    last.weight.zero_()
        deeper.m_head, deeper.m_tail = copy.deepcopy(self.m_head), copy.deepcopy(self.m_tail)
        for name in ("m_down1", "m_down2", "m_down3"):
            old, new = getattr(self, name), getattr(deeper, name)
            for i in range(self.blocks):
                new[i] = copy.deepcopy(old[i])
            new[-1] = copy.deepcopy(old[-1])  # the stride-2 conv
        for name in ("m_up3", "m_up2", "m_up1", "m_body"):
            old, new = getattr(self, name), getattr(deeper, name)
            for i in range(len(old)):  # the transposed conv (up) and the trained blocks
                new[i] = copy.deepcopy(old[i])
        return deeper

    def widened(self, widths: tuple[int, int, int, int]) -> UNetDenoiser:
        """The same function with more channels on some levels (`widths`, none narrower).

        Every conv keeps its trained weights in the old corner of its new kernel; what a
        new channel feeds into an old one starts at zero, so old channels compute exactly
        what they did (up to float rounding) whatever the new ones hold, and the network's
        output is unchanged. The new channels start from a fresh network's random weights,
        so the zero weights reading them get a gradient from the first step. Meant for the
        finest levels, where a few channels must carry all the fine texture.
        """
        if any(new < old for new, old in zip(widths, self.widths, strict=True)):
            raise ValueError(f"widths {widths} narrow some level of {self.widths}")
        wider = UNetDenoiser(self.channels, widths, self.blocks)
        old_convs = dict(self.named_modules())
        with torch.no_grad():
            for name, conv in wider.named_modules():
                if not isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
                    continue
                old = old_convs[name]
                assert isinstance(old, nn.Conv2d | nn.ConvTranspose2d)
                # Conv2d weights are (out, in, k, k); transposed ones (in, out, k, k).
                weight = conv.weight if isinstance(conv, nn.Conv2d) else conv.weight.transpose(0, 1)
                before = old.weight if isinstance(old, nn.Conv2d) else old.weight.transpose(0, 1)
                outs, ins = before.shape[:2]
                weight[:outs, :ins] = before
                weight[:outs, ins:] = 0.0
        return wider

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 4, H, W), RGB then the sigma map; any H and W.

        In use, edges are extended by replicating 8 pixels (and up to a multiple of 8):
        the outermost pixels come out better than with the convs' zero padding alone, and
        a tile that ends at the image's edge is treated like the whole image there. Not
        in training, whose crops are cut from inside pictures and have no such edge.
        """
        height, width = x.shape[-2:]
        margin = 0 if self.training else 8
        x = F.pad(
            x,
            (margin, margin + -width % 8, margin, margin + -height % 8),
            mode="replicate",
        )
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        out = self.m_body(x4)
        out = self.m_up3(out + x4)
        out = self.m_up2(out + x3)
        out = self.m_up1(out + x2)
        out = self.m_tail(out + x1)
        cropped: torch.Tensor = out[..., margin : margin + height, margin : margin + width]
        return cropped
