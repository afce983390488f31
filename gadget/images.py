"""Turn a slice's reconstruction into ISMRMRD images with full headers and meta attributes.

Headers follow Gadgetron's conventions (geometry and counters from the slice's centre line,
recon-space matrix and field of view) so that downstream gadgets (sorting, DICOM export) work
unchanged. Meta attributes are written under Gadgetron's ``GADGETRON_*`` names and under the
names MRD (FIRE) clients read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ismrmrd
import numpy as np
import torch

from gadget.assembly import AssembledSlice
from gadget.config import GadgetConfig
from gadget.geometry import EncodingGeometry

if TYPE_CHECKING:
    from diffusion_core.reconstruct import Reconstruction

PROCESSING_HISTORY = ["GADGETRON_DIFFUSION"]


@dataclass(frozen=True)
class ImageSeries:
    """One output series: what it shows and how it is labelled."""

    offset: int  # added to the configured image_series_index
    role: str
    comment: str
    description: str


MEAN = ImageSeries(0, "Image", "posterior mean", "_DIFFUSION")
UNCERTAINTY = ImageSeries(1, "Uncertainty", "posterior std", "_DIFFUSION_STD")
COMPLEX = ImageSeries(2, "Image", "posterior mean (complex)", "_DIFFUSION_CPLX")


class ImageMaker:
    """Build the images of each reconstructed slice; numbers images 1, 2, ... per stream.

    Args:
        geometry: the stream's encoding (recon matrix and field of view).
        config: which images to send and the base series index.
    """

    def __init__(self, geometry: EncodingGeometry, config: GadgetConfig) -> None:
        self.geometry = geometry
        self.config = config
        self._index = itertools.count(1)

    def __call__(self, assembled: AssembledSlice, result: Reconstruction) -> list[ismrmrd.Image]:
        index = next(self._index)
        mean = self._crop(result.mean.detach().cpu())
        std = self._crop(result.std.detach().cpu().to(torch.float32))
        comment = f"{self.config.sampler}, {self.config.nfe} NFE, {self.config.num_samples} samples"
        images = []
        if self.config.send_magnitude:
            images.append(self._image(assembled, mean.abs(), MEAN, index, comment))
        if self.config.send_uncertainty:
            images.append(self._image(assembled, std, UNCERTAINTY, index, comment))
        if self.config.send_complex:
            images.append(self._image(assembled, mean.to(torch.complex64), COMPLEX, index, comment))
        return images

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        """Centre (y, x) crop to the recon matrix (phase oversampling, zero-filled grids)."""
        ny, nx = self.geometry.recon_matrix[1], self.geometry.recon_matrix[0]
        y0, x0 = (image.shape[-2] - ny) // 2, (image.shape[-1] - nx) // 2
        if y0 < 0 or x0 < 0:
            return image
        return image[..., y0 : y0 + ny, x0 : x0 + nx]

    def _image(
        self,
        assembled: AssembledSlice,
        pixels: torch.Tensor,
        series: ImageSeries,
        index: int,
        comment: str,
    ) -> ismrmrd.Image:
        from diffusion_core.normalization import magnitude_scale

        complex_data = pixels.is_complex()
        # Cast to the wire dtype here: gadgetron 1.4.1 under numpy 2 cannot convert while writing.
        dtype = np.complex64 if complex_data else np.float32
        data = np.ascontiguousarray(pixels.numpy().astype(dtype, copy=False))[None, None]
        header = ismrmrd.ImageHeader.from_acquisition(assembled.reference)
        header.image_type = ismrmrd.IMTYPE_COMPLEX if complex_data else ismrmrd.IMTYPE_MAGNITUDE
        header.image_index = index
        header.image_series_index = self.config.image_series_index + series.offset
        header.field_of_view[:] = self.geometry.recon_fov_mm
        key = assembled.key
        for name in ("slice", "contrast", "phase", "repetition", "set", "average"):
            setattr(header, name, getattr(key, name))
        image = ismrmrd.Image(head=header, data=data)
        width = float(magnitude_scale(pixels.abs()))
        meta = {
            "DataRole": series.role,
            "GADGETRON_DataRole": series.role,
            "ImageComment": f"{series.comment} ({comment})",
            "GADGETRON_ImageComment": f"{series.comment} ({comment})",
            "SequenceDescriptionAdditional": series.description,
            "GADGETRON_SeqDescription": series.description,
            "ImageProcessingHistory": PROCESSING_HISTORY,
            "GADGETRON_ImageProcessingHistory": PROCESSING_HISTORY,
            "WindowCenter": f"{width / 2:.6g}",
            "WindowWidth": f"{width:.6g}",
            "GADGETRON_WindowCenter": f"{width / 2:.6g}",
            "GADGETRON_WindowWidth": f"{width:.6g}",
            "GADGETRON_ImageNumber": str(index),
            "Keep_image_geometry": "1",
        }
        image.meta = meta
        return image
