"""Linear MR operators as small torch modules that compose: ``A = M @ F @ S``.

Shapes (leading batch dimensions are allowed everywhere):
    image     (..., y, x)      complex64
    coil data (..., c, y, x)   complex64
    mask      (..., ky, kx)    real (0/1 or weights), broadcast over coils
Device and dtype follow the input tensors; nothing is moved in constructors.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion_core.fft import fft2c, ifft2c


class LinearOperator(nn.Module):
    """A linear map with ``forward`` and ``adjoint``; ``A @ B`` composes, ``normal`` is A^H A."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x."""
        return self.adjoint(self(x))

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        return ComposedOp(self, other)


class ComposedOp(LinearOperator):
    """``outer @ inner``: x -> outer(inner(x)); adjoint in reverse order."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        super().__init__()
        self.outer = outer
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))


class FourierOp(LinearOperator):
    """Centred orthonormal 2D FFT over the last two dimensions (unitary: adjoint = inverse)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)


class MaskOp(LinearOperator):
    """Cartesian sampling: multiply by a real mask (..., ky, kx); self-adjoint."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask


class SensitivityOp(LinearOperator):
    """Coil sensitivities ``maps`` (..., c, y, x): image (..., y, x) -> coil images (..., c, y, x)."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(-3)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * y).sum(dim=-3)


def sense_operator(maps: torch.Tensor, mask: torch.Tensor) -> LinearOperator:
    """SENSE forward model ``A = M @ F @ S`` for maps (..., c, y, x) and mask (..., ky, kx)."""
    return MaskOp(mask.unsqueeze(-3)) @ FourierOp() @ SensitivityOp(maps)
