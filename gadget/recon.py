"""Reconstruct assembled slices with diffusion_core; the only stage that runs the prior."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from gadget.assembly import AssembledSlice
from gadget.config import GadgetConfig

if TYPE_CHECKING:
    from diffusion_core.reconstruct import Reconstruction

log = logging.getLogger(__name__)

Reconstructor = Callable[[AssembledSlice], "Reconstruction"]


def choose_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given (validated by torch)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"property 'device' is {name!r}, but no CUDA device is available here")
    return device


class PriorCache:
    """Loaded priors shared by every connection of one process: one per (checkpoint, device, bf16).

    A server (``gadgetron-diffusion serve``, ``python -m gadget.listen``) holds one and hands it to
    each connection, so N concurrent streams cost one copy of the network, not N. Loading is
    serialised by a lock; the denoisers are used read-only (eval mode, no gradients), so several
    threads may sample with the same one at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._priors: dict[tuple[str, str, bool], Callable[..., torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._priors)

    def get(self, config: GadgetConfig, device: torch.device) -> Callable[..., torch.Tensor]:
        """The prior named by ``config.checkpoint`` (the shipped one when empty) on ``device``."""
        key = (config.checkpoint, str(device), config.bf16)
        with self._lock:
            if key not in self._priors:
                self._priors[key] = load_prior(config, device)
            return self._priors[key]


def load_prior(config: GadgetConfig, device: torch.device) -> Callable[..., torch.Tensor]:
    """Load the prior named by ``config.checkpoint`` (the shipped one when empty) onto ``device``."""
    if config.checkpoint:
        from diffusion_core.checkpoint import load_checkpoint

        denoiser = load_checkpoint(config.checkpoint, device=device, autocast_bf16=config.bf16)
    else:
        from diffusion_core.priors import load_default_prior

        denoiser = load_default_prior(device=device, autocast_bf16=config.bf16)
    log.info("prior loaded on %s (%s)", device, config.checkpoint or "shipped default prior")
    return denoiser


class DiffusionReconstructor:
    """Posterior sampling of one slice at a time with a loaded prior.

    Args:
        denoiser: the prior (``denoise(x, sigma) -> x0``), already on ``device``.
        config: the gadget configuration (sampler, NFE, samples, CG iterations, coil compression).
        device: where the slice's tensors are moved for reconstruction.
        progress: optional callback forwarded to :func:`diffusion_core.reconstruct.reconstruct`.
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        config: GadgetConfig,
        device: torch.device,
        progress: Callable[..., None] | None = None,
    ) -> None:
        from diffusion_core.reconstruct import ReconConfig

        self.denoiser = denoiser
        self.config = config
        self.device = device
        self.progress = progress
        from diffusion_core.checkpoint import read_card
        from diffusion_core.priors import prior_path
        from diffusion_core.uncertainty import entries_from_card

        self.recon_config = ReconConfig(
            sampler=config.sampler,
            nfe=config.nfe,
            num_samples=config.num_samples,
            cg_iters=config.cg_iters,
            cg_iters_inside=config.cg_iters_inside or None,
            cg_iters_cut=config.cg_iters_cut or None,
            cg_select=config.cg_candidates(),
            cg_select_nfe=config.cg_select_nfe,
            linear_width=config.linear_width,
            map_sets=config.map_sets,
            # the std's calibration from the prior's model card (none: the std is labelled raw)
            calibration=entries_from_card(read_card(prior_path(config.checkpoint or "default"))),
        )
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

    @classmethod
    def from_config(
        cls,
        config: GadgetConfig,
        progress: Callable[..., None] | None = None,
        priors: PriorCache | None = None,
    ) -> DiffusionReconstructor:
        """Load the prior named by ``config.checkpoint`` (the shipped one when empty), or take it
        from ``priors`` (a server's cache shared by its connections)."""
        device = choose_device(config.device)
        denoiser = load_prior(config, device) if priors is None else priors.get(config, device)
        return cls(denoiser, config, device, progress)

    def __call__(self, assembled: AssembledSlice) -> Reconstruction:
        from diffusion_core.reconstruct import reconstruct

        kspace = assembled.kspace.to(self.device)
        mask = assembled.mask.to(self.device)
        noise_cov = (
            None
            if assembled.noise_covariance is None
            else assembled.noise_covariance.to(self.device)
        )
        calibration = (
            None if assembled.calibration is None else assembled.calibration.to(self.device)
        )
        if self.config.coil_compression and self.config.coil_compression < kspace.shape[0]:
            kspace, calibration, noise_cov = _compress(
                kspace, mask, calibration, noise_cov, self.config.coil_compression
            )
        maps = None
        if calibration is not None:
            from diffusion_core.espirit import espirit_maps

            maps = espirit_maps(calibration, (calibration.abs().sum(0) > 0).to(torch.float32))
        return reconstruct(
            kspace,
            mask,
            self.denoiser,
            self.recon_config,
            maps=maps,
            noise_cov=noise_cov,
            generator=self.generator,
            progress=self.progress,
        )


def _compress(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    calibration: torch.Tensor | None,
    noise_cov: torch.Tensor | None,
    n_virtual: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Prewhiten (when the noise is known), then compress to ``n_virtual`` coils.

    After prewhitening the noise is white, and it stays white under the compression matrix,
    so the returned covariance is the identity.
    """
    from diffusion_core.calibration import calibration_region
    from diffusion_core.coils import coil_compression_matrix, compress_coils
    from diffusion_core.noise import prewhiten, prewhitening_matrix

    if noise_cov is not None:
        whitening = prewhitening_matrix(noise_cov)
        kspace = prewhiten(kspace, whitening)
        calibration = None if calibration is None else prewhiten(calibration, whitening)
    source = (
        calibration if calibration is not None else kspace[(slice(None), *calibration_region(mask))]
    )
    matrix = coil_compression_matrix(source, n_virtual)
    kspace = compress_coils(kspace, matrix)
    calibration = None if calibration is None else compress_coils(calibration, matrix)
    identity = (
        None
        if noise_cov is None
        else torch.eye(n_virtual, dtype=kspace.dtype, device=kspace.device)
    )
    return kspace, calibration, identity
