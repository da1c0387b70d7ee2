"""The CellPol network: a U-Net with two heatmap heads and two embedding heads.

One code path serves 2D and 3D (``spatial_dims``); width, depth, head width and
per-level z pooling are constructor arguments, and :meth:`CellPolNet.config`
returns them as a JSON-serialisable dict so that a model folder can rebuild the
network with ``CellPolNet(**config)``.

Presets live in :data:`ARCHITECTURES` and are built with :func:`build_network`.
The device helpers (:func:`select_device`, :func:`device_description`,
:func:`prepare_for_device`, :func:`autocast_context`) keep the CPU/GPU choices in
one place.
"""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..defaults import DEFAULT_DEVICE
from ..errors import InputError

__all__ = [
    "CellPolNet",
    "ARCHITECTURES",
    "DEFAULT_ARCHITECTURE",
    "build_network",
    "select_device",
    "device_description",
    "prepare_for_device",
    "to_device_input",
    "enable_huge_pages",
    "autocast_context",
    "OUTPUT_KEYS",
    "OFFSET_KEYS",
]

OUTPUT_KEYS = ("heatmap_start", "heatmap_end", "embed_start", "embed_end")
#: Outputs of the offset head, one map per axis (3D; 2D has the last two).
OFFSET_KEYS = ("offset_z", "offset_y", "offset_x")

# oneDNN runs a 3x3x3 convolution with 1 or 2 input channels on a slow path
# (about 5x slower than the same convolution with 4 channels, measured with
# torch 2.13 on an AVX-512 CPU), so the inference copy pads the input with
# zero channels up to this count.
_MIN_FAST_IN_CHANNELS = 4


def _conv(spatial_dims, cin, cout, kernel_size):
    cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel_size, padding=kernel_size // 2)


def _batch_norm(spatial_dims, channels, enabled):
    if not enabled:
        return nn.Identity()
    return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)


def _dropout(p):
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _relu_init(conv):
    # He initialisation suits the ReLU that follows every 3x3(x3) convolution.
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class _DoubleConv(nn.Module):
    """Two 3x3(x3) convolutions, each followed by a ReLU."""

    def __init__(self, spatial_dims, cin, cout):
        super().__init__()
        self.conv1 = _relu_init(_conv(spatial_dims, cin, cout, 3))
        self.conv2 = _relu_init(_conv(spatial_dims, cout, cout, 3))

    def forward(self, x):
        x = F.relu(self.conv1(x), inplace=True)
        return F.relu(self.conv2(x), inplace=True)


class _ChannelAffine(nn.Module):
    """``x * scale + shift`` per channel, in place: an eval-mode BatchNorm that
    allocates nothing (used only by the inference copy)."""

    def __init__(self, bn):
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x):
        rows = _channel_rows(x)
        if rows is not None:
            # A channels-last tensor as rows of k pixels x C channels: with
            # rows of >= 64 values the bf16 add runs ~10x faster than with
            # per-channel broadcasting over 16-value rows (torch 2.13).
            c, k = x.shape[1], 1
            while c * k < 64 and rows.shape[0] % (2 * k) == 0:
                k *= 2
            rows = rows.view(-1, c * k)
            rows.mul_(self.scale.repeat(k)).add_(self.shift.repeat(k))
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x.mul_(self.scale.view(shape)).add_(self.shift.view(shape))


def _channel_rows(x):
    """A channels-last (B, C, ...) tensor as a (B * voxels, C) view, or None."""
    if x.dim() < 3 or x.is_contiguous():
        return None
    moved = x.movedim(1, -1)
    return moved.view(-1, x.shape[1]) if moved.is_contiguous() else None


class _Down(nn.Module):
    """Max-pool, dropout, BatchNorm, then a double convolution."""

    def __init__(self, spatial_dims, cin, cout, pool_kernel, dropout, batch_norm):
        super().__init__()
        pool_cls = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        self.pool = pool_cls(pool_kernel)
        self.drop = _dropout(dropout)
        self.bn = _batch_norm(spatial_dims, cin, batch_norm)
        self.conv = _DoubleConv(spatial_dims, cin, cout)

    def forward(self, x):
        return self.conv(self.bn(self.drop(self.pool(x))))


class _Up(nn.Module):
    """Transposed-convolution up-sampling, skip concatenation, BatchNorm, double
    convolution and dropout."""

    def __init__(self, spatial_dims, cin, cout, kernel, dropout, batch_norm):
        super().__init__()
        cls = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.upconv = cls(cin, cout, kernel, stride=kernel)
        # The inference copy folds the up-sampled half of ``bn`` into
        # ``upconv`` and applies the skip half here, in place.
        self.skip_norm = nn.Identity()
        self.bn = _batch_norm(spatial_dims, 2 * cout, batch_norm)
        self.conv = _DoubleConv(spatial_dims, 2 * cout, cout)
        self.drop = _dropout(dropout)

    def forward(self, x, skip):
        x = torch.cat([self.upconv(x), self.skip_norm(skip)], dim=1)
        return self.drop(self.conv(self.bn(x)))


class _Head(nn.Module):
    """The branch of one structure: 3x3(x3) conv + BN + ReLU, then a heatmap
    sub-branch and (optionally) an embedding sub-branch, each a 3x3(x3) conv +
    ReLU and a 1x1(x1) conv to one channel."""

    def __init__(self, spatial_dims, cin, width, embedding, batch_norm):
        super().__init__()
        self.conv = _relu_init(_conv(spatial_dims, cin, width, 3))
        self.bn = _batch_norm(spatial_dims, width, batch_norm)
        self.heat_conv = _relu_init(_conv(spatial_dims, width, width, 3))
        self.heat_out = _conv(spatial_dims, width, 1, 1)
        if embedding:
            self.embed_conv = _relu_init(_conv(spatial_dims, width, width, 3))
            self.embed_out = _conv(spatial_dims, width, 1, 1)
        else:
            self.embed_conv = None
            self.embed_out = None

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        heat = torch.sigmoid(self.heat_out(F.relu(self.heat_conv(x), inplace=True)))
        if self.embed_conv is None:
            return heat, None
        embed = self.embed_out(F.relu(self.embed_conv(x), inplace=True))
        return heat, embed


class _OffsetHead(nn.Module):
    """The offset branch: a 3x3(x3) conv + ReLU and a 1x1(x1) conv to one
    channel per spatial axis (linear), read at start-structure voxels."""

    def __init__(self, spatial_dims, cin, width):
        super().__init__()
        self.conv = _relu_init(_conv(spatial_dims, cin, width, 3))
        self.out = _conv(spatial_dims, width, spatial_dims, 1)
        self.keys = OFFSET_KEYS[3 - spatial_dims:]

    def forward(self, y):
        o = self.out(F.relu(self.conv(y)).to(self.out.weight.dtype))
        return {k: o[:, i:i + 1].contiguous() for i, k in enumerate(self.keys)}


class CellPolNet(nn.Module):
    """U-Net with a heatmap and an embedding output per structure (3DCellPol).

    Architecture (docs/method.md §2). Level 0 is a double 3x3(x3) convolution
    (each followed by a ReLU) from ``in_channels`` to ``base_filters``. Each
    of the ``depth`` down levels max-pools, applies dropout (not after the first
    pooling, as the reference), BatchNorm and a double convolution that doubles
    the filters (32 -> 1024 at the bottleneck for the paper's 32 filters and 5
    levels). Each up level up-samples with a transposed convolution (kernel =
    stride = the pooling kernel), concatenates the skip connection, applies
    BatchNorm, a double convolution that halves the filters and dropout (not at
    full resolution, as the reference). Two heads (start and end structure)
    each apply a 3x3(x3) conv + BatchNorm + ReLU (**product:** BN before the
    ReLU, so that it folds into the convolution for inference; the reference
    puts it after), then a heatmap sub-branch and an embedding sub-branch, each
    a 3x3(x3) conv + ReLU and a 1x1(x1) conv to one channel. Heatmaps go
    through a sigmoid; embeddings are linear.

    Input-size rule. Each spatial size must be a positive multiple of 2 to the
    power of the number of pooling levels along that axis: ``2**depth`` for y
    and x, ``2**sum(pool_z)`` for z (see :meth:`size_multiple`). With the
    default (z pooled at every level) and ``depth=5``, a 128x128x64 (x*y*z)
    tile is valid; with ``pool_z=(True, True, False, False, False)`` z only
    needs to be a multiple of 4.

    Parameters
    ----------
    in_channels : int
        Image channels (2: start and end structure).
    spatial_dims : {3, 2}
        3 for (B, C, Z, Y, X) volumes, 2 for (B, C, Y, X) images.
    base_filters : int
        Filters at full resolution; doubled at each pooling level.
    depth : int
        Number of max-pool levels (>= 1).
    head_filters : int or None
        Width of the head convolutions; None means ``base_filters``.
    embedding : bool
        False builds the "CtrDet" variant, with heatmap outputs only.
    offset : bool
        Add the offset head: per axis, the displacement from each start
        voxel to its end structure (see
        :func:`cellpol_core.detection.targets.render_offsets`), outputs
        :data:`OFFSET_KEYS` (the last two in 2D).
    dropout : float
        Dropout probability in [0, 1).
    batch_norm : bool
        False replaces every BatchNorm by the identity.
    pool_z : bool or sequence of bool or None
        3D only: whether each pooling level halves z too (kernel 2x2x2) or
        only y and x (kernel 1x2x2). A single bool applies to every level;
        None pools z at every level, as the paper. Must be None in 2D.

    Notes
    -----
    Shape contract of :meth:`forward`: the input is (B, in_channels, Z, Y, X)
    (or (B, in_channels, Y, X) in 2D) with valid spatial sizes; the output is
    a dict of (B, 1, Z, Y, X) (or (B, 1, Y, X)) tensors: ``heatmap_start``
    and ``heatmap_end`` in [0, 1], and, unless ``embedding`` is False,
    ``embed_start`` and ``embed_end`` (unbounded).
    """

    def __init__(
        self,
        in_channels: int = 2,
        spatial_dims: int = 3,
        base_filters: int = 32,
        depth: int = 5,
        head_filters: Optional[int] = None,
        embedding: bool = True,
        dropout: float = 0.1,
        batch_norm: bool = True,
        pool_z=None,
        offset: bool = False,
    ):
        enable_huge_pages()  # before the parameters: torch's first allocation
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value in (("in_channels", in_channels), ("base_filters", base_filters),
                            ("depth", depth)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if head_filters is None:
            head_filters = base_filters
        if int(head_filters) != head_filters or head_filters < 1:
            raise ValueError(f"head_filters must be a positive integer, got {head_filters!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if spatial_dims == 2:
            if pool_z is not None:
                raise ValueError("pool_z applies to 3D networks only; use None in 2D")
        elif pool_z is None or isinstance(pool_z, bool):
            pool_z = [True if pool_z is None else pool_z] * int(depth)
        else:
            pool_z = [bool(p) for p in pool_z]
            if len(pool_z) != depth:
                raise ValueError(f"pool_z needs one entry per pooling level ({depth}), "
                                 f"got {len(pool_z)}")

        self.in_channels = int(in_channels)
        self.spatial_dims = int(spatial_dims)
        self.base_filters = int(base_filters)
        self.depth = int(depth)
        self.head_filters = int(head_filters)
        self.embedding = bool(embedding)
        self.offset = bool(offset)
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.pool_z = pool_z
        # Set by fuse_for_inference() on its copy only.
        self._pad_in_to = self.in_channels
        self._fused_heads = None

        sd = self.spatial_dims
        filters = [self.base_filters * 2**i for i in range(self.depth + 1)]
        kernels = [((2 if pz else 1), 2, 2) for pz in pool_z] if sd == 3 else [2] * self.depth
        self.inc = _DoubleConv(sd, self.in_channels, filters[0])
        self.down = nn.ModuleList(
            _Down(sd, filters[i], filters[i + 1], kernels[i],
                  self.dropout if i > 0 else 0.0, self.batch_norm)
            for i in range(self.depth))
        # up[i] goes from level i + 1 to level i; applied from the deepest.
        self.up = nn.ModuleList(
            _Up(sd, filters[i + 1], filters[i], kernels[i],
                self.dropout if i > 0 else 0.0, self.batch_norm)
            for i in range(self.depth))
        self.head_start = _Head(sd, filters[0], self.head_filters, self.embedding, self.batch_norm)
        self.head_end = _Head(sd, filters[0], self.head_filters, self.embedding, self.batch_norm)
        self.offset_head = (_OffsetHead(sd, filters[0], self.head_filters) if self.offset
                            else None)

    # -- configuration -------------------------------------------------------

    def config(self) -> dict:
        """Constructor arguments as a JSON-serialisable dict.

        ``CellPolNet(**net.config())`` builds the same architecture, so that a
        saved ``state_dict`` loads into it.
        """
        return {
            "in_channels": self.in_channels,
            "spatial_dims": self.spatial_dims,
            "base_filters": self.base_filters,
            "depth": self.depth,
            "head_filters": self.head_filters,
            "embedding": self.embedding,
            "dropout": self.dropout,
            "batch_norm": self.batch_norm,
            "pool_z": None if self.pool_z is None else list(self.pool_z),
            # Only when set: configs of networks without the head stay as they were.
            **({"offset": True} if self.offset else {}),
        }

    @property
    def output_keys(self) -> tuple:
        """The keys of the dict that :meth:`forward` returns."""
        keys = OUTPUT_KEYS if self.embedding else OUTPUT_KEYS[:2]
        return keys + (OFFSET_KEYS[3 - self.spatial_dims:] if self.offset else ())

    def size_multiple(self) -> tuple:
        """Spatial sizes must be multiples of these: (z, y, x), or (y, x) in 2D."""
        xy = 2**self.depth
        if self.spatial_dims == 2:
            return (xy, xy)
        return (2 ** sum(self.pool_z), xy, xy)

    def valid_input_size(self, size: Sequence[int]) -> bool:
        """Whether a spatial size (z, y, x), or (y, x) in 2D, is accepted.

        Each size must be positive and a multiple of :meth:`size_multiple`.
        """
        size = tuple(size)
        mult = self.size_multiple()
        if len(size) != len(mult):
            return False
        return all(int(s) == s and s > 0 and s % m == 0 for s, m in zip(size, mult))

    def _check_input(self, x):
        if x.dim() != self.spatial_dims + 2:
            axes = "(B, C, Z, Y, X)" if self.spatial_dims == 3 else "(B, C, Y, X)"
            raise ValueError(f"CellPolNet ({self.spatial_dims}D) expects a {axes} tensor, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"CellPolNet expects {self.in_channels} input channels, "
                             f"got {x.shape[1]}")
        size = tuple(x.shape[2:])
        if not self.valid_input_size(size):
            raise ValueError(f"CellPolNet input size {size} is not valid: each spatial size "
                             f"must be a positive multiple of {self.size_multiple()}")

    # -- forward --------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> dict:
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            (B, in_channels, Z, Y, X), or (B, in_channels, Y, X) in 2D; spatial
            sizes must satisfy :meth:`valid_input_size`.

        Returns
        -------
        dict of str to torch.Tensor
            ``heatmap_start``, ``heatmap_end`` (sigmoid, in [0, 1]) and, unless
            the network is a CtrDet variant, ``embed_start``, ``embed_end``;
            each (B, 1, *spatial).

        Raises
        ------
        ValueError
            Wrong number of dimensions or channels, or an invalid spatial size.
        """
        self._check_input(x)
        if self._pad_in_to > x.shape[1]:
            x = _pad_channels(x, self._pad_in_to)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for i in reversed(range(self.depth)):
            y = self.up[i](y, skips.pop())
        # Before the fused heads, which may reuse y's memory.
        offsets = self.offset_head(y) if self.offset_head is not None else {}
        if self._fused_heads is not None:
            return {**self._fused_heads(y), **offsets}
        heat_s, emb_s = self.head_start(y)
        heat_e, emb_e = self.head_end(y)
        out = {"heatmap_start": heat_s, "heatmap_end": heat_e}
        if self.embedding:
            out["embed_start"] = emb_s
            out["embed_end"] = emb_e
        return {**out, **offsets}

    # -- inference ------------------------------------------------------------

    def fuse_for_inference(self) -> "CellPolNet":
        """An eval-mode copy rearranged for speed, with the same outputs.

        The copy gives the outputs of ``self.eval()`` up to float rounding and
        runs faster on the CPU:

        * the head BatchNorms are folded into the convolutions before them
          (``torch.nn.utils.fusion.fuse_conv_bn_eval``), and the convolutions
          of the two heads are merged into wider and grouped convolutions,
          which oneDNN runs at a higher FLOP rate than narrow ones;
        * each up-sampling BatchNorm is split: its first half folds into the
          transposed convolution, its second half is applied in place to the
          skip tensor, which nothing reads afterwards;
        * the input is padded with zero channels (and the first convolution
          with zero weights) up to 4 channels, which oneDNN runs ~5x faster
          than 1 or 2 channels;
        * on the CPU every convolution goes to oneDNN, also the small deep
          ones that PyTorch would send to its slower native kernel.

        The BatchNorms after pooling are followed by zero-padded convolutions,
        so folding them would change the border voxels; they stay. The copy is
        for inference only (its parameters do not require gradients, and it
        writes into intermediate tensors in place); it shares no parameters
        with ``self``, so ``self`` can go on training.
        """
        net = copy.deepcopy(self).eval()
        net.requires_grad_(False)
        if net._fused_heads is not None:  # already fused
            return net
        if net.in_channels < _MIN_FAST_IN_CHANNELS:
            net._pad_in_to = _MIN_FAST_IN_CHANNELS
            net.inc.conv1 = _pad_conv_inputs(net.inc.conv1, _MIN_FAST_IN_CHANNELS)
        if net.batch_norm:
            for head in (net.head_start, net.head_end):
                head.conv = fuse_conv_bn_eval(head.conv, head.bn)
                head.bn = nn.Identity()
            for up in net.up:
                c = up.upconv.out_channels
                up.skip_norm = _ChannelAffine(_split_bn(up.bn, c, 2 * c))
                up.upconv = fuse_conv_bn_eval(up.upconv, _split_bn(up.bn, 0, c), transpose=True)
                up.bn = nn.Identity()
        net._fused_heads = _FusedHeads(net.head_start, net.head_end, net.spatial_dims)
        # The merged copy replaces the per-structure heads.
        del net.head_start, net.head_end
        net.head_start = net.head_end = None
        _use_onednn(net)
        return net


class _FusedHeads(nn.Module):
    """Both heads of a BN-folded network as three convolutions (inference).

    1. one 3x3(x3) conv producing both trunks (S*h channels), ReLU;
    2. one grouped 3x3(x3) conv (S groups) producing the heatmap and
       embedding sub-branches of each structure (S*k*h channels), ReLU;
    3. one 1x1(x1) conv producing S*k output channels, ordered (heat,
       [embed]) per structure, with block-diagonal weights (the zeros add
       exactly nothing, and oneDNN runs it faster than the grouped form);
       sigmoid on the heat channels.
    """

    def __init__(self, head_start, head_end, spatial_dims):
        super().__init__()
        heads = (head_start, head_end)
        self.embedding = head_start.embed_conv is not None
        k = 2 if self.embedding else 1
        s, h = len(heads), head_start.conv.out_channels
        self.k = k
        self.trunk = _conv(spatial_dims, head_start.conv.in_channels, s * h, 3)
        self.sub = _grouped_conv(spatial_dims, s * h, s * k * h, 3, groups=s)
        self.out = _conv(spatial_dims, s * k * h, s * k, 1)
        branches = [(hd.heat_conv, hd.heat_out) for hd in heads]
        if self.embedding:
            branches = [b for hd in heads for b in ((hd.heat_conv, hd.heat_out),
                                                     (hd.embed_conv, hd.embed_out))]
        with torch.no_grad():
            self.trunk.weight.copy_(torch.cat([hd.conv.weight for hd in heads]))
            self.trunk.bias.copy_(torch.cat([hd.conv.bias for hd in heads]))
            # Grouped weights: each group sees its structure's h trunk
            # channels, so the sub-branch weights stack along the outputs.
            self.sub.weight.copy_(torch.cat([c.weight for c, _ in branches]))
            self.sub.bias.copy_(torch.cat([c.bias for c, _ in branches]))
            self.out.weight.zero_()
            for j, (_, o) in enumerate(branches):
                self.out.weight[j, j * h:(j + 1) * h] = o.weight[0]
            self.out.bias.copy_(torch.cat([o.bias for _, o in branches]))
        self.to(head_start.conv.weight.device).requires_grad_(False)

    def forward(self, y):
        y = F.relu(self.trunk(y), inplace=True)
        y = F.relu(self.sub(y), inplace=True)
        # A bf16 copy keeps ``out`` in float32 (precision.inference_net): bf16
        # logits would round heatmap peaks into ties and embeddings by ~0.03.
        y = self.out(y.to(self.out.weight.dtype))
        k = self.k
        out = {"heatmap_start": torch.sigmoid(y[:, 0:1]),
               "heatmap_end": torch.sigmoid(y[:, k:k + 1])}
        if self.embedding:
            # Channel slices of a channels-last tensor are strided views.
            out["embed_start"] = y[:, 1:2].contiguous()
            out["embed_end"] = y[:, 3:4].contiguous()
        return out


def _grouped_conv(spatial_dims, cin, cout, kernel_size, groups):
    cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel_size, padding=kernel_size // 2, groups=groups)


def _pad_conv_inputs(conv, channels):
    """A copy of ``conv`` taking ``channels`` inputs, the extra ones with zero weights."""
    padded = _conv(conv.weight.dim() - 2, channels, conv.out_channels, conv.kernel_size[0])
    extra = channels - conv.in_channels
    with torch.no_grad():
        zeros = conv.weight.new_zeros((conv.out_channels, extra) + tuple(conv.weight.shape[2:]))
        padded.weight.copy_(torch.cat([conv.weight, zeros], dim=1))
        padded.bias.copy_(conv.bias)
    return padded.to(conv.weight.device).eval().requires_grad_(False)


class _OneDNNConvMixin:
    """Sends float32 CPU convolutions to oneDNN.

    PyTorch runs a convolution with batch size 1 and a small input on its
    native kernel, which is several times slower than oneDNN for the deep
    levels of the network (measured with torch 2.13: 86 ms -> 16 ms for 32
    channels at 16x32x32).
    """

    def _conv_forward(self, input, weight, bias):
        if (input.device.type == "cpu" and input.dtype == torch.float32
                and self.padding_mode == "zeros" and _onednn_available()):
            return torch.ops.aten.mkldnn_convolution(
                input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


class _OneDNNConv3d(_OneDNNConvMixin, nn.Conv3d):
    pass


class _OneDNNConv2d(_OneDNNConvMixin, nn.Conv2d):
    pass


_ONEDNN_OK = None


def _onednn_available():
    """Whether ``aten::mkldnn_convolution`` runs here (checked once)."""
    global _ONEDNN_OK
    if _ONEDNN_OK is None:
        try:
            x = torch.ones(1, 1, 3, 3)
            w = torch.ones(1, 1, 3, 3)
            y = torch.ops.aten.mkldnn_convolution(x, w, None, [1, 1], [1, 1], [1, 1], 1)
            _ONEDNN_OK = bool(torch.backends.mkldnn.is_available()) and float(y[0, 0, 1, 1]) == 9.0
        except Exception:  # an older or a differently built torch: use the default path
            _ONEDNN_OK = False
    return _ONEDNN_OK


def _use_onednn(module):
    """Turn every Conv2d/Conv3d under ``module`` into its oneDNN variant, in place."""
    swap = {nn.Conv3d: _OneDNNConv3d, nn.Conv2d: _OneDNNConv2d}
    for m in module.modules():
        if type(m) in swap:
            m.__class__ = swap[type(m)]


def _pad_channels(x, channels):
    """``x`` with zero channels appended up to ``channels``, in its memory format."""
    fmt = torch.contiguous_format
    for cl in (torch.channels_last_3d, torch.channels_last):
        if x.dim() == (5 if cl is torch.channels_last_3d else 4) and x.is_contiguous(
                memory_format=cl) and not x.is_contiguous():
            fmt = cl
    out = x.new_zeros((x.shape[0], channels) + tuple(x.shape[2:])).contiguous(memory_format=fmt)
    out[:, : x.shape[1]] = x
    return out


def _split_bn(bn, start, stop):
    """An eval-mode BatchNorm over channels [start, stop) of ``bn``."""
    part = type(bn)(stop - start, eps=bn.eps).to(bn.weight.device)
    with torch.no_grad():
        part.weight.copy_(bn.weight[start:stop])
        part.bias.copy_(bn.bias[start:stop])
        part.running_mean.copy_(bn.running_mean[start:stop])
        part.running_var.copy_(bn.running_var[start:stop])
    return part.eval()


# -- presets -------------------------------------------------------------------

#: Preset architectures for :func:`build_network`.
#:
#: ``paper``: the reference, 32 filters, 5 pooling levels, 32-channel heads
#: (90.6 M parameters in 3D, 839 GFLOP per 128x128x64 tile, ~4.9 s per tile on
#: the 2-core CPU). ``light`` (the default): 16 filters, 4 pooling levels,
#: 8-channel heads (5.7 M parameters, 149 GFLOP per tile). Chosen by measuring
#: ``benchmarks/bench_network.py`` on the 2-core AMD EPYC (Zen 4) CPU, torch
#: 2.13, fused + channels_last_3d, minimum of interleaved runs on a machine
#: shared with other jobs:
#:
#: ============  ======  =====  ========  ========
#: candidate     params  GFLOP  s / tile  GFLOP/s
#: ============  ======  =====  ========  ========
#: b16 d4 h16    5.69 M  207    1.15      180
#: b16 d3 h16    1.44 M  200    1.10      183
#: b16 d4 h8     5.66 M  149    0.81      184
#: b16 d3 h8     1.42 M  142    0.78      183
#: b12 d4 h12    3.20 M  117    0.84      140
#: b8 d4 h8      1.42 M   52    0.39      134
#: ============  ======  =====  ========  ========
#:
#: Convolutions whose channel counts are multiples of 16 run at ~80% of the
#: measured 226 GFLOP/s FP32 peak (an AVX-512 FMA loop), so time follows
#: FLOPs; 8- and 12-channel backbones waste vector lanes and buy little. The
#: heads cost 42% of the FLOPs of the 16-channel-head net, all at full
#: resolution; 8-channel heads bring a tile under 1 s while keeping the
#: 16-filter, 4-level backbone (5.7 M parameters, receptive field over 100
#: voxels, enough for nuclei) -- depth 3 saves only ~4% of the time.
ARCHITECTURES = {
    "paper": dict(base_filters=32, depth=5, head_filters=32, embedding=True),
    "ctrdet-paper": dict(base_filters=32, depth=5, head_filters=32, embedding=False),
    "light": dict(base_filters=16, depth=4, head_filters=8, embedding=True),
    "ctrdet-light": dict(base_filters=16, depth=4, head_filters=8, embedding=False),
}
DEFAULT_ARCHITECTURE = "light"


def build_network(arch: str = DEFAULT_ARCHITECTURE, *, in_channels: int = 2,
                  spatial_dims: int = 3, offset: bool = False) -> CellPolNet:
    """Build a preset network.

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHITECTURES`.
    in_channels : int
        Image channels.
    spatial_dims : {3, 2}
        3D or 2D convolutions.
    offset : bool
        Add the offset head.

    Returns
    -------
    CellPolNet

    Raises
    ------
    InputError
        ``arch`` is not a known preset.
    """
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown network architecture {arch!r}; choose one of "
                         f"{', '.join(sorted(ARCHITECTURES))}")
    return CellPolNet(in_channels=in_channels, spatial_dims=spatial_dims, offset=offset,
                      **ARCHITECTURES[arch])


# -- devices -------------------------------------------------------------------

def select_device(device=DEFAULT_DEVICE) -> torch.device:
    """Resolve a device request.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``
        or ``"cuda:N"``.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        CUDA was requested but is not available, or the name is unknown.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("CUDA requested but not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"CUDA device {dev.index} requested but only "
                             f"{torch.cuda.device_count()} available")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return dev


def device_description(device, precision=None) -> str:
    """A short human-readable description: ``"GPU: <name>"`` or ``"CPU (<n> threads)"``.

    With a ``precision`` (a name or a resolved
    :class:`~cellpol_core.detection.precision.Precision`) it also says what
    the network computes in, e.g. ``"CPU (2 threads, bf16/AMX)"``.
    """
    device = torch.device(device)
    label = ""
    if precision is not None:
        from .precision import resolve_precision

        label = resolve_precision(precision, device).label
    if device.type == "cuda":
        name = f"GPU: {torch.cuda.get_device_name(device)}"
        return f"{name} ({label})" if label else name
    return f"CPU ({torch.get_num_threads()} threads{', ' + label if label else ''})"


def prepare_for_device(net: nn.Module, device) -> nn.Module:
    """Move a network to a device, in the memory format that is fastest there.

    On the CPU the network uses ``torch.channels_last_3d`` (3D) or
    ``torch.channels_last`` (2D), which oneDNN runs faster; inputs should be
    converted with :func:`to_device_input`. On CUDA it stays contiguous.
    Returns the network (moved in place).
    """
    device = torch.device(device)
    net = net.to(device)
    fmt = _memory_format(net, device)
    if fmt is not None:
        net = net.to(memory_format=fmt)
    return net


def to_device_input(x, device, spatial_dims: Optional[int] = None, *,
                    dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Move a network input batch to a device: the one way network inputs get there.

    Parameters
    ----------
    x : ndarray or torch.Tensor
        The batch, (B, C, Z, Y, X) or (B, C, Y, X). An array is wrapped
        without a copy.
    device : str or torch.device
        Where the network is.
    spatial_dims : {3, 2}, optional
        Given for a network moved with :func:`prepare_for_device`: on the CPU
        the batch then takes that network's channels-last layout. None keeps
        the default layout (networks moved with ``.to(device)``).
    dtype : torch.dtype, optional
        The network's input type (e.g. ``torch.bfloat16``); default unchanged.

    Returns
    -------
    torch.Tensor
    """
    device = torch.device(device)
    x = torch.as_tensor(x).to(device, dtype)
    if spatial_dims is not None and device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last_3d if spatial_dims == 3
                         else torch.channels_last)
    return x


def enable_huge_pages():
    """Let torch put large CPU tensors on transparent huge pages.

    About 20 % faster CPU convolutions. Torch reads ``THP_MEM_ALLOC_ENABLE``
    once, at its first CPU allocation, so this must run before any tensor
    exists; :class:`CellPolNet` calls it before allocating its parameters.
    A value the user set is kept.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _memory_format(net, device):
    if device.type != "cpu":
        return None
    dims = getattr(net, "spatial_dims", 3)
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def autocast_context(device, precision="auto"):
    """Mixed precision for training (and eager inference): bf16 autocast, or nothing.

    ``precision`` ("auto", "fp32" or "bf16", or a resolved
    :class:`~cellpol_core.detection.precision.Precision`) is the user's choice,
    resolved by :func:`~cellpol_core.detection.precision.resolve_precision`:
    "auto" is bf16 on CUDA and on CPUs with native bf16 (AMX, AVX-512 BF16),
    fp32 elsewhere (for training on a CPU, "auto" is fp32: see
    :mod:`~cellpol_core.detection.precision`). In bf16, convolutions run in bf16 over the float32
    weights (which the optimiser updates in float32); cast the outputs to
    float32 before the loss. Autocast measured faster for training than bf16
    weights with float32 master copies (``benchmarks/bench_train.py``).
    Inference casts the whole network instead
    (:func:`~cellpol_core.detection.precision.inference_net`).
    """
    from .precision import resolve_precision

    device = torch.device(device)
    if not resolve_precision(precision, device, training=True).bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
