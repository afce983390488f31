"""Shared test helpers: random complex tensors and the dot-product adjointness check used for every operator."""

from __future__ import annotations

from collections.abc import Callable

import torch


def random_complex(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard complex Gaussian tensor (complex64) of ``shape``."""
    return torch.complex(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    )


def assert_adjoint(
    forward: Callable[[torch.Tensor], torch.Tensor],
    adjoint: Callable[[torch.Tensor], torch.Tensor],
    x_shape: tuple[int, ...],
    seed: int = 0,
    rtol: float = 1e-5,
) -> None:
    """Check <A x, y> == <x, A^H y> for random complex x, y (the dot-product test)."""
    g = torch.Generator().manual_seed(seed)
    x = random_complex(x_shape, g).to(torch.complex128)
    ax = forward(x)
    y = random_complex(tuple(ax.shape), g).to(torch.complex128)
    lhs = torch.vdot(ax.flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), adjoint(y).flatten())
    assert torch.allclose(lhs, rhs, rtol=rtol, atol=rtol * float(lhs.abs())), (lhs, rhs)
