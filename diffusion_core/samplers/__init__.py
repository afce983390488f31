"""Posterior samplers: plain functions ``sample_*(x, sigmas, denoiser, dc, generator, callback)``."""

from diffusion_core.samplers.common import SamplerStep
from diffusion_core.samplers.dds import sample_dds
from diffusion_core.samplers.dps import sample_dps
from diffusion_core.samplers.langevin import sample_langevin
from diffusion_core.samplers.score_mri import sample_score_mri
from diffusion_core.samplers.song2022 import sample_song2022

__all__ = [
    "SamplerStep",
    "sample_dds",
    "sample_dps",
    "sample_langevin",
    "sample_score_mri",
    "sample_song2022",
]
