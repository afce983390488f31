"""``python -m diffusion_core.training``: the training command line."""

from diffusion_core.training.cli import main

main()
