"""Display / PACS-ready pixel values: one fixed intensity scale per stream, integer windows.

The rule follows Gadgetron's scanner chains. ``GenericReconImageArrayScalingGadget`` computes one
scale per encoding space from the first image array (``auto_scaling_only_once``) and reuses it
for the rest of the stream, mapping that first array's maximum to 2048 of a 12-bit range; it
records the factor as ``GADGETRON_ScaleRatio`` and appends ``x<scale>`` to the image comment.
``FloatToUShortGadget`` / ``FloatToShortGadget`` then round and clamp to
``[min_intensity, max_intensity]`` (4095, 12 bits, by default). python-ismrmrd-server's FIRE
examples send int16 scaled to ``2**BitsStored - 1`` (12 bits by default) with integer windows.

Here the first slice's maximum of the mean magnitude maps to half of ``max_intensity``, so later,
brighter slices have headroom; every slice and every series of the stream (the std too) uses the
same factor, so stored values compare across slices and the std reads in the mean's units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

FIRST_SLICE_FRACTION = 0.5  # the first slice's maximum maps to this fraction of max_intensity
WIRE_DTYPES = {"uint16": np.uint16, "int16": np.int16}


@dataclass(frozen=True)
class IntensityScale:
    """stored value = round(factor * value in data units), clamped to [0, max_intensity].

    Attributes:
        output_type: ``float`` (no conversion, factor 1), ``uint16`` or ``int16``.
        factor: the scale; 6 significant digits, so the factor written in meta is exact.
        max_intensity: the largest stored value (integer output only).
    """

    output_type: str
    factor: float
    max_intensity: int

    @classmethod
    def for_first_slice(
        cls, output_type: str, max_intensity: int, first_mean: torch.Tensor
    ) -> IntensityScale:
        """The stream's scale, from the magnitude (y, x) of its first slice's mean."""
        if output_type == "float":
            return cls(output_type, 1.0, max_intensity)
        peak = float(first_mean.abs().max()) if first_mean.numel() else 0.0
        if not np.isfinite(peak) or peak <= 0.0:
            log.warning("first slice is empty or not finite: intensity scale 1")
            return cls(output_type, 1.0, max_intensity)
        factor = float(f"{FIRST_SLICE_FRACTION * max_intensity / peak:.6g}")
        return cls(output_type, factor, max_intensity)

    @property
    def integer(self) -> bool:
        return self.output_type != "float"

    def pixels(self, values: torch.Tensor, what: str) -> np.ndarray:
        """(y, x) real values in data units -> the wire array (float32, uint16 or int16)."""
        data = values.detach().cpu().numpy()
        if not self.integer:
            return np.ascontiguousarray(data.astype(np.float32, copy=False))
        scaled = np.floor(data.astype(np.float64) * self.factor + 0.5)  # lround for values >= 0
        clipped = int(np.count_nonzero(scaled > self.max_intensity))
        if clipped:
            log.warning(
                "%s: %d of %d pixels above %d after scaling x%s were clamped",
                what,
                clipped,
                scaled.size,
                self.max_intensity,
                self.factor_text,
            )
        clamped = np.clip(np.nan_to_num(scaled, nan=0.0), 0, self.max_intensity)
        return np.ascontiguousarray(clamped.astype(WIRE_DTYPES[self.output_type]))

    def window(self, values: torch.Tensor) -> tuple[str, str]:
        """(WindowCenter, WindowWidth) strings for ``values`` (y, x) real, in data units.

        The width is the image's 99th percentile of |value| (the display range the previews use),
        the centre half of it: integers in stored units for integer output (at least 1), decimals
        in data units for float output.
        """
        from diffusion_core.normalization import magnitude_scale

        width = float(magnitude_scale(values.abs()))
        if not self.integer:
            return f"{width / 2:.6g}", f"{width:.6g}"
        stored = max(1, min(self.max_intensity, int(np.floor(width * self.factor + 0.5))))
        return str(max(1, (stored + 1) // 2)), str(stored)

    @property
    def factor_text(self) -> str:
        return f"{self.factor:.6g}"
