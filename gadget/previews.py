"""PNG previews of output images (8-bit grey, windowed to the image's own 99th percentile)."""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import numpy as np
import torch

SERIES_NAMES = {"Image": "mean", "STD_MAP": "std"}  # by GADGETRON_DataRole


def write_preview(image: ismrmrd.Image, directory: Path) -> Path:
    """Write ``<role>_<series>_<index>.png`` of the magnitude of ``image`` into ``directory``."""
    from PIL import Image as PILImage

    from diffusion_core.normalization import magnitude_scale

    directory.mkdir(parents=True, exist_ok=True)
    pixels = torch.from_numpy(np.abs(image.data[0, 0]).astype(np.float32))
    scaled = (pixels / magnitude_scale(pixels)).clamp(0, 1) * 255
    role = image.meta.get("GADGETRON_DataRole", "image")
    name = SERIES_NAMES.get(role, "image")
    if image.image_type == ismrmrd.IMTYPE_COMPLEX:
        name = "complex"
    path = directory / f"{name}_s{image.image_series_index}_{image.image_index:03d}.png"
    PILImage.fromarray(scaled.round().to(torch.uint8).numpy()).save(path)
    return path
