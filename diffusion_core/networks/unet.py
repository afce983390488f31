"""A small DDPM/EDM-style U-Net for denoising complex MR images stored as two real channels.

Architecture (Ho et al. 2020; Song et al. 2021; Karras et al. 2022): a sinusoidal embedding of
the noise level ``c_noise`` feeds every residual block (GroupNorm -> SiLU -> conv, plus the
embedding as a per-channel shift); self-attention at the listed low-resolution levels; average
pooling down, nearest-neighbour up. Any H, W is accepted: the input is reflect-padded to a multiple
of ``2 ** (levels - 1)`` and the output cropped back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; level ``i`` works at resolution ``H / 2**i``."""

    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (3,)
    dropout: float = 0.0
    in_channels: int = 2
    out_channels: int = 0  # 0: as many as in_channels (extra inputs such as positions: fewer)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if self.base_channels < 4 or self.base_channels % 4:
            raise ValueError(f"base_channels: expected a multiple of 4, got {self.base_channels}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult: expected positive integers, got {self.channel_mult}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks: expected >= 1, got {self.num_res_blocks}")
        bad = [a for a in self.attention_levels if not 0 <= a < len(self.channel_mult)]
        if bad:
            raise ValueError(
                f"attention_levels: {bad} outside 0..{len(self.channel_mult) - 1} "
                f"(one level per entry of channel_mult)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected in [0, 1), got {self.dropout}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels: expected >= 1, got {self.in_channels}")
        if self.out_channels < 0:
            raise ValueError(
                f"out_channels: expected >= 0 (0: in_channels), got {self.out_channels}"
            )

    @property
    def outputs(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_levels"] = list(self.attention_levels)
        if not self.out_channels:
            del d["out_channels"]  # cards and training states written before it stay equal
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"UNetConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class NoiseEmbedding(nn.Module):
    """Sinusoidal (transformer positional) features of c_noise (B,) followed by a 2-layer MLP."""

    freqs: torch.Tensor

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        half = channels // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(channels, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        # c_noise = log(sigma)/4 is O(1); scale so that the fastest frequency resolves it finely.
        arg = (1000.0 * c_noise.float())[:, None] * self.freqs[None, :]
        return self.mlp(torch.cat([arg.cos(), arg.sin()], dim=1))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, + embedding shift, GroupNorm -> SiLU -> dropout -> conv3x3, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_channels, c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None].to(h.dtype)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over all pixels (used only at low resolution)."""

    def __init__(self, channels: int, head_channels: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(
        self, c_ins: list[int], c_out: int, emb: int, attention: bool, dropout: float
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c, c_out, emb, dropout) for c in c_ins)
        self.attn = nn.ModuleList(Attention(c_out) if attention else nn.Identity() for _ in c_ins)

    def forward(
        self,
        h: torch.Tensor,
        emb: torch.Tensor,
        skips: list[torch.Tensor] | None = None,
        push: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Run the blocks; decoder levels pop a skip before each block, encoder levels push after."""
        for block, attn in zip(self.blocks, self.attn, strict=True):
            if skips is not None:
                h = torch.cat([h, skips.pop()], dim=1)
            h = attn(block(h, emb))
            if push is not None:
                push.append(h)
        return h


class UNet(nn.Module):
    """U-Net mapping (B, C, H, W) and c_noise (B,) to (B, C', H, W) (C' = ``config.outputs``); see
    :class:`UNetConfig`.

    Weights are initialised from ``generator`` when given (same seed -> same network); the forward
    pass is deterministic given the weights (no randomness at inference; dropout only in training).
    """

    def __init__(
        self, config: UNetConfig | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        ch = [cfg.base_channels * m for m in cfg.channel_mult]
        emb = 4 * cfg.base_channels
        self.embed = NoiseEmbedding(cfg.base_channels, emb)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch[0]]
        c = ch[0]
        for i, co in enumerate(ch):
            if i > 0:
                skips.append(c)  # the downsampled features are a skip as well
            ins = [c] + [co] * (cfg.num_res_blocks - 1)
            self.down.append(Level(ins, co, emb, i in cfg.attention_levels, cfg.dropout))
            skips += [co] * cfg.num_res_blocks
            c = co
        self.mid = Level([c, c], c, emb, True, cfg.dropout)
        self.up = nn.ModuleList()
        for i in reversed(range(cfg.levels)):
            ins = []
            for _ in range(cfg.num_res_blocks + 1):
                ins.append(c + skips.pop())
                c = ch[i]
            self.up.insert(0, Level(ins, ch[i], emb, i in cfg.attention_levels, cfg.dropout))
        self.up_conv = nn.ModuleList(
            nn.Conv2d(ch[i + 1], ch[i + 1], 3, padding=1) for i in range(cfg.levels - 1)
        )
        self.norm_out = _norm(ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.outputs, 3, padding=1)
        if generator is not None:
            self._init_from(generator)

    def _init_from(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
                    if m.bias is not None:
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"x: expected (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}"
            )
        c_noise = torch.as_tensor(c_noise, device=x.device).reshape(-1).expand(x.shape[0])
        h0, w0 = x.shape[-2:]
        x, crop = _pad_to_multiple(x, 2 ** (self.config.levels - 1))
        emb = self.embed(c_noise)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
                skips.append(h)
            h = level(h, emb, push=skips)
        h = self.mid(h, emb)
        for i in reversed(range(self.config.levels)):
            h = self.up[i](h, emb, skips=skips)
            if i > 0:
                h = self.up_conv[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., crop[0] : crop[0] + h0, crop[1] : crop[1] + w0]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H, W symmetrically up to a multiple (reflect where possible); return the crop offsets."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (0, 0)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    mode = "reflect" if max(pad[:2]) < w and max(pad[2:]) < h else "replicate"
    return F.pad(x, pad, mode=mode), (ph // 2, pw // 2)
