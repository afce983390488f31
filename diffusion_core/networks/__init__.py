"""Score / denoiser networks (plain torch modules on real channel tensors)."""

from diffusion_core.networks.unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig"]
