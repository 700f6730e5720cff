"""Omni-dimensional dynamic convolution (ODConv, Li et al., ICLR 2022).

An ODConv layer holds ``kernel_num`` candidate kernels and, per input sample, mixes
them into one kernel with four attentions computed from the globally pooled input:

* channel attention (one weight per input channel, sigmoid),
* filter attention (one weight per output channel, sigmoid),
* spatial attention (one weight per kernel position, sigmoid),
* kernel attention (one weight per candidate kernel, softmax).

Every attention logit is divided by a temperature; the ODConv paper anneals it from
30 to 1 during the first epochs so that all candidate kernels get trained early.

The aggregated kernel of sample ``b`` is::

    W_b = sum_k kernel_b[k] * spatial_b * channel_b * filter_b * W_k

Channel and filter attentions are applied to the input and output feature maps
instead of the kernel (equivalent, and cheaper for the grouped convolution).

The per-sample kernels of a batch can be applied in three equivalent ways
(:data:`PER_SAMPLE_METHODS`), chosen by ``ODConvConfig.per_sample``:

* ``loop``: one convolution per sample (keeps channels-last inputs channels-last; the
  fastest in a training step on an H100, see BENCHMARKS.md),
* ``grouped``: one convolution with the batch folded into the groups,
* ``matmul``: the k*k shifted copies of the input times each sample's kernel as one
  batched matrix product (no batch-dependent attribute, so ONNX export uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PER_SAMPLE_METHODS = ("loop", "grouped", "matmul")


class AttentionBatchNorm(nn.BatchNorm2d):
    """BatchNorm of the pooled attention features that accepts a training batch of one.

    The attention branch normalises Bx C x1x1 tensors, for which batch statistics do not
    exist when B = 1 (plain BatchNorm raises). Such a batch is normalised with the
    running statistics, which it leaves unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


class ODConvAttention(nn.Module):
    """The four attentions of ODConv, computed from the globally pooled input.

    Pool -> 1x1 conv (no bias) -> BN -> ReLU, then one 1x1 conv head per attention.
    Heads that would be trivial are not built, as in the reference implementation:
    the filter head for a depthwise conv, the spatial head for a 1x1 kernel and the
    kernel head for a single candidate kernel. Their attention is the constant 1,
    returned as ``None``.

    Args:
        in_channels: Input channels C_in of the convolution.
        out_channels: Output channels C_out of the convolution.
        kernel_size: Side k of the square kernel.
        groups: Groups of the convolution.
        reduction: Hidden width as a fraction of ``in_channels``.
        kernel_num: Number K of candidate kernels.
        min_channels: Lower bound of the hidden width.
        temperature: Divisor of every attention logit.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        groups: int = 1,
        reduction: float = 0.0625,
        kernel_num: int = 8,
        min_channels: int = 16,
        temperature: float = 1.0,
    ):
        super().__init__()
        hidden = max(int(in_channels * reduction), min_channels)
        self.kernel_size = kernel_size
        self.kernel_num = kernel_num
        self.temperature = float(temperature)
        self.squeeze = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.norm = AttentionBatchNorm(hidden)
        self.act = nn.ReLU(inplace=True)
        self.channel_head = nn.Conv2d(hidden, in_channels, 1)
        is_depthwise = in_channels == groups and in_channels == out_channels
        self.filter_head = None if is_depthwise else nn.Conv2d(hidden, out_channels, 1)
        self.spatial_head = None if kernel_size == 1 else nn.Conv2d(hidden, kernel_size * kernel_size, 1)
        self.kernel_head = None if kernel_num == 1 else nn.Conv2d(hidden, kernel_num, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def update_temperature(self, temperature: float) -> None:
        if temperature <= 0:
            raise ValueError(f"ODConv temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Compute the attentions of a batch.

        Args:
            x: Input, B x C_in x H x W.

        Returns:
            ``(channel, filter, spatial, kernel)`` with shapes B x C_in, B x C_out,
            B x k x k and B x K; a skipped head gives ``None`` (the constant 1).
        """
        batch = x.shape[0]
        hidden = self.act(self.norm(self.squeeze(F.adaptive_avg_pool2d(x, 1))))
        t = self.temperature
        channel = torch.sigmoid(self.channel_head(hidden).view(batch, -1) / t)
        filter_ = None
        if self.filter_head is not None:
            filter_ = torch.sigmoid(self.filter_head(hidden).view(batch, -1) / t)
        spatial = None
        if self.spatial_head is not None:
            logits = self.spatial_head(hidden).view(batch, self.kernel_size, self.kernel_size)
            spatial = torch.sigmoid(logits / t)
        kernel = None
        if self.kernel_head is not None:
            kernel = torch.softmax(self.kernel_head(hidden).view(batch, -1) / t, dim=1)
        return channel, filter_, spatial, kernel


class ODConv2d(nn.Module):
    """Omni-dimensional dynamic 2D convolution without bias.

    Args:
        in_channels: Input channels C_in.
        out_channels: Output channels C_out.
        kernel_size: Side k of the square kernel.
        stride: Convolution stride.
        padding: Zero padding; ``None`` keeps the spatial size at stride 1
            (``dilation * (k - 1) // 2``).
        dilation: Kernel dilation.
        groups: Convolution groups (must divide both channel counts).
        reduction: Hidden width of the attention branch as a fraction of ``in_channels``.
        kernel_num: Number K of candidate kernels.
        min_channels: Lower bound of the attention hidden width.
        temperature: Divisor of the attention logits (see :meth:`update_temperature`).
        per_sample: How per-sample kernels are applied, one of :data:`PER_SAMPLE_METHODS`
            (same values; they differ only in speed and traceability).

    Shapes:
        B x C_in x H x W -> B x C_out x H' x W' (H' = H at stride 1 with default padding).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        reduction: float = 0.0625,
        kernel_num: int = 8,
        min_channels: int = 16,
        temperature: float = 1.0,
        per_sample: str = "loop",
    ):
        super().__init__()
        if per_sample not in PER_SAMPLE_METHODS:
            raise ValueError(f"per_sample must be one of {', '.join(PER_SAMPLE_METHODS)}, got {per_sample!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if kernel_num < 1:
            raise ValueError(f"kernel_num must be at least 1, got {kernel_num}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = dilation * (kernel_size - 1) // 2 if padding is None else padding
        self.dilation = dilation
        self.groups = groups
        self.kernel_num = kernel_num
        self.per_sample = per_sample
        self.attention = ODConvAttention(
            in_channels, out_channels, kernel_size, groups, reduction, kernel_num, min_channels, temperature
        )
        self.weight = nn.Parameter(
            torch.empty(kernel_num, out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for candidate in self.weight.data:
            nn.init.kaiming_normal_(candidate, mode="fan_out", nonlinearity="relu")

    def update_temperature(self, temperature: float) -> None:
        """Set the temperature dividing every attention logit (1 = plain sigmoid/softmax)."""
        self.attention.update_temperature(temperature)

    @property
    def temperature(self) -> float:
        return self.attention.temperature

    def aggregate_kernels(self, spatial: torch.Tensor | None, kernel: torch.Tensor | None) -> torch.Tensor:
        """Mix the candidate kernels per sample.

        Args:
            spatial: B x k x k spatial attention or ``None``.
            kernel: B x K kernel attention or ``None``.

        Returns:
            B x C_out x C_in/groups x k x k, or 1 x ... when neither attention depends
            on the sample.
        """
        if kernel is None:
            mixed = self.weight[:1]
        else:
            mixed = (kernel.to(self.weight.dtype) @ self.weight.flatten(1)).view(-1, *self.weight.shape[1:])
        if spatial is not None:
            mixed = mixed * spatial.to(mixed.dtype)[:, None, None]
        return mixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the per-sample aggregated kernels; B x C_in x H x W -> B x C_out x H' x W'."""
        batch, channels = x.shape[:2]
        channel, filter_, spatial, kernel = self.attention(x)
        x = x * channel.view(batch, channels, 1, 1).to(x.dtype)
        weight = self.aggregate_kernels(spatial, kernel).to(x.dtype)
        if kernel is None and spatial is None:  # one kernel for every sample, whatever the batch
            out = F.conv2d(x, weight[0], None, self.stride, self.padding, self.dilation, self.groups)
        elif self.per_sample == "grouped":
            out = self._grouped_conv(x, weight)
        elif self.per_sample == "loop":
            out = torch.cat([self._conv(x[i : i + 1], weight[i]) for i in range(batch)])
        else:
            out = self._matmul_conv(x, weight)
        if filter_ is not None:
            out = out * filter_.view(batch, self.out_channels, 1, 1).to(out.dtype)
        return out

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, groups: int | None = None) -> torch.Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups or self.groups)

    def _grouped_conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Fold the batch into the groups so all samples run in one convolution."""
        batch, channels, height, width = x.shape
        grouped = self._conv(
            x.reshape(1, batch * channels, height, width), weight.flatten(0, 1), self.groups * batch
        )
        return grouped.view(batch, self.out_channels, *grouped.shape[-2:])

    def _matmul_conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Shifted copies of the input (im2col with slices) times each sample's kernel."""
        columns, out_height, out_width = self._shifted_copies(x)
        # B x g x (C_in/g * k*k) x L  and  B x g x (C_out/g) x (C_in/g * k*k)
        columns = columns.unflatten(1, (self.groups, -1))
        kernels = weight.flatten(2).unflatten(1, (self.groups, -1))
        return torch.matmul(kernels, columns).flatten(1, 2).unflatten(-1, (out_height, out_width))

    def _shifted_copies(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """B x (C*k*k) x (H'*W'), columns ordered like ``weight.flatten(2)``."""
        k, stride, dilation, padding = self.kernel_size, self.stride, self.dilation, self.padding
        height, width = x.shape[-2:]
        out_height = (height + 2 * padding - dilation * (k - 1) - 1) // stride + 1
        out_width = (width + 2 * padding - dilation * (k - 1) - 1) // stride + 1
        padded = F.pad(x, (padding, padding, padding, padding))
        copies = [
            padded[
                :,
                :,
                row * dilation : row * dilation + (out_height - 1) * stride + 1 : stride,
                col * dilation : col * dilation + (out_width - 1) * stride + 1 : stride,
            ]
            for row in range(k)
            for col in range(k)
        ]
        columns = torch.stack(copies, dim=2)  # B x C x k*k x H' x W'
        return columns.flatten(1, 2).flatten(2), out_height, out_width

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"kernel_num={self.kernel_num}, temperature={self.temperature}, per_sample={self.per_sample}"
        )
