"""HarDNet (Chao et al., ICCV 2019), the CNN backbone of AutoSAM's prompt network.

timm has no HarDNet, so it is written here from the paper's layout. A HarDBlock's layer
``k`` (1-based) reads the outputs of layers ``k - 2**i`` for every ``2**i`` dividing ``k``
(layer 0 is the block input); its width is the growth rate times ``multiplier ** (links - 1)``,
rounded down to an even number. The block outputs the odd layers and the last one, concatenated.
Each block is followed by a 1x1 transition conv to the stage width and, at some stages, a 2x2
max pool.

HarDNet-85 (:data:`HARDNET_SPECS`, ``hardnet85``): stem 3x3 stride-2 conv to 48, 3x3 conv to 96,
3x3 stride-2 max pool; six stages of 8, 16, 16, 16, 16, 4 layers with growth rates 24, 24, 28,
36, 48, 256 (multiplier 1.7), stage widths 192, 256, 320, 480, 720, 1280, pooled after stages
1, 3 and 5. Without its ImageNet head it has 35.389 M parameters. The last stage's dropout is
left out (AutoSAM computes that stage and never uses it; here the decoder reads it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HarDNetSpec:
    """One HarDNet layout. Tuples have one entry per stage.

    Attributes:
        stem_channels: Widths of the two stem convolutions.
        stage_channels: Width of each stage's 1x1 transition conv (its output).
        growth_rates: Growth rate of each stage's HarDBlock.
        block_layers: Layers of each stage's HarDBlock.
        pooled: Whether a 2x2 max pool follows the stage.
        multiplier: Width multiplier per extra link of a layer.
    """

    stem_channels: tuple[int, int]
    stage_channels: tuple[int, ...]
    growth_rates: tuple[int, ...]
    block_layers: tuple[int, ...]
    pooled: tuple[bool, ...]
    multiplier: float = 1.7


HARDNET_SPECS: dict[str, HarDNetSpec] = {
    "hardnet85": HarDNetSpec(
        stem_channels=(48, 96),
        stage_channels=(192, 256, 320, 480, 720, 1280),
        growth_rates=(24, 24, 28, 36, 48, 256),
        block_layers=(8, 16, 16, 16, 16, 4),
        pooled=(True, False, True, False, True, False),
    ),
}
# Same structure at toy size, for tests.
HARDNET_SPECS["hardnet_tiny"] = dataclasses.replace(
    HARDNET_SPECS["hardnet85"], stem_channels=(8, 16), stage_channels=(16, 24, 32, 40, 48, 64),
    growth_rates=(4, 4, 6, 6, 8, 8), block_layers=(2,) * 6,
)


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """HarDNet's conv unit: bias-free conv, BatchNorm, ReLU6 (same padding)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


def harmonic_links(layer: int) -> list[int]:
    """Earlier layers that 1-based ``layer`` reads: ``layer - 2**i`` for every ``2**i`` dividing it."""
    links, step = [], 1
    while step <= layer and layer % step == 0:
        links.append(layer - step)
        step *= 2
    return links


class HarDBlock(nn.Module):
    """Harmonic densely connected block: Bx``in_channels``xHxW -> Bx``out_channels``xHxW.

    Args:
        in_channels: Width of the block input (layer 0).
        growth_rate: Width of a layer with one link.
        multiplier: Width factor per extra link.
        num_layers: 3x3 conv layers in the block.
    """

    def __init__(self, in_channels: int, growth_rate: int, multiplier: float, num_layers: int):
        super().__init__()
        widths = [in_channels]
        self.links = [harmonic_links(layer) for layer in range(1, num_layers + 1)]
        layers = []
        for links in self.links:
            width = 2 * (int(growth_rate * multiplier ** (len(links) - 1) + 1) // 2)  # even, as HarDNet's
            layers.append(conv_bn_relu6(sum(widths[link] for link in links), width))
            widths.append(width)
        self.layers = nn.ModuleList(layers)
        self.outputs = [k for k in range(1, num_layers + 1) if k % 2 == 1 or k == num_layers]
        self.out_channels = sum(widths[k] for k in self.outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        results = [x]
        for links, layer in zip(self.links, self.layers):
            inputs = [results[link] for link in links]
            results.append(layer(torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]))
        return torch.cat([results[k] for k in self.outputs], 1)


class HarDNet(nn.Module):
    """HarDNet backbone without its classifier: Bx3xSxS -> features at strides 4, 8, 16, 32.

    The feature at each stride is the output of the last stage at that stride (HarDNet-85:
    192xS/4, 320xS/8, 720xS/16, 1280xS/32 channels, as AutoSAM reads them).

    Args:
        spec: The layout (:data:`HARDNET_SPECS`).

    Attributes:
        feature_channels: Channels of the four features, stride 4 first.
    """

    def __init__(self, spec: HarDNetSpec):
        super().__init__()
        first, second = spec.stem_channels
        self.stem = nn.Sequential(
            conv_bn_relu6(3, first, stride=2),
            conv_bn_relu6(first, second),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages, width = [], second
        for index, stage_width in enumerate(spec.stage_channels):
            block = HarDBlock(width, spec.growth_rates[index], spec.multiplier, spec.block_layers[index])
            stage = [block, conv_bn_relu6(block.out_channels, stage_width, kernel_size=1)]
            stages.append(nn.Sequential(*stage))
            width = stage_width
        self.stages = nn.ModuleList(stages)
        self.pooled = spec.pooled
        # A stage's output is a feature when the next stage runs at a coarser stride (or none follows).
        self.feature_stages = [i for i, pooled in enumerate(spec.pooled) if pooled or i == len(spec.pooled) - 1]
        self.feature_channels = [spec.stage_channels[i] for i in self.feature_stages]
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bx3xSxS -> one feature per stride (S/4, S/8, ...), widths :attr:`feature_channels`."""
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.feature_stages:
                features.append(x)
            if self.pooled[index]:
                x = self.pool(x)
        return features
