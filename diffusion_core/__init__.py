"""Tensor-only core of gadgetron-diffusion: MR operators, coil maps, priors and samplers.

Never imports ismrmrd or gadgetron; usable from a notebook with torch and numpy alone.
Heavy submodules are imported where used so that ``import diffusion_core`` stays fast.
"""

__version__ = "0.1.0"
