"""Turn a slice's reconstruction into ISMRMRD images with full headers and meta attributes.

Headers follow Gadgetron's conventions (geometry and counters from the slice's centre line,
recon-space matrix and field of view) so that downstream gadgets (sorting, DICOM export) work
unchanged. Meta attributes are written under Gadgetron's ``GADGETRON_*`` names and under the
names MRD (FIRE) clients read; every value is ASCII (libismrmrd reads ASCII strings only).

Series (labels a radiographer reads; "DIFFUSION" would read as diffusion-weighted imaging):

* ``image_series_index``: ``AI_RECON``, the posterior mean (magnitude), Gadgetron role ``Image``.
* ``+ 1``: ``AI_RECON_SD``, the uncertainty: the pixel-wise posterior standard deviation on the
  mean's scale (mean +/- 2 SD is the nominal 95 % interval), Gadgetron role ``STD_MAP`` (its own
  role for a standard-deviation map). Not sent with one sample (a single draw has no spread).
* ``+ 2``: ``AI_RECON_CPLX``, the complex mean (always complex64 in data units: ISMRMRD has no
  complex integer type and Gadgetron's FloatToFixPoint gadgets refuse complex images).

FIRE's ``DataRole`` is ``Image`` for all three, as python-ismrmrd-server's examples send for maps
too, so that the scanner stores them as ordinary image series.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ismrmrd
import numpy as np
import torch

from gadget.assembly import AssembledSlice
from gadget.config import GadgetConfig
from gadget.display import IntensityScale
from gadget.geometry import EncodingGeometry

if TYPE_CHECKING:
    from diffusion_core.reconstruct import Reconstruction

log = logging.getLogger(__name__)

PROCESSING_HISTORY = ["PYTHON", "AI_RECON"]


@dataclass(frozen=True)
class ImageSeries:
    """One output series: what it shows and how it is labelled."""

    offset: int  # added to the configured image_series_index
    gadgetron_role: str  # GADGETRON_DataRole (mri_core_def.h)
    description: str  # SequenceDescriptionAdditional / GADGETRON_SeqDescription


MEAN = ImageSeries(0, "Image", "AI_RECON")
UNCERTAINTY = ImageSeries(1, "STD_MAP", "AI_RECON_SD")
COMPLEX = ImageSeries(2, "Image", "AI_RECON_CPLX")


# the std of one sample (GadgetConfig.linear_width)
LINEAR_MEASURE = "linear-Gaussian posterior standard deviation (1 sample: no spread of samples)"


@dataclass(frozen=True)
class Uncertainty:
    """What the std series means, from the Reconstruction and the assembled slice.

    Attributes:
        calibrated: the std was scaled by a calibration fitted on held-out data.
        factor: that calibration factor (1.0 when uncalibrated).
        data: what the calibration was fitted on (``none`` when uncalibrated).
        note: how the calibration was chosen (exact setting, nearest one, none), or why not.
        prewhitened: the k-space was prewhitened with a measured noise covariance.
        noise_note: where the noise covariance came from, or why there was none.
        support: pixels of the region reconstructed, or None (all pixels).
        measure: what the std is: the posterior samples' spread, or for one sample the
            linear-Gaussian posterior width (``linear_width``).
        data_misfit: rho, the data misfit of the mean (reduced chi-square against the measured
            k-space; about 1 when mean and coil maps explain the data to the noise); a calibration
            with a residual exponent widens the std where it is high (``note`` says by how much).
    """

    calibrated: bool
    factor: float
    data: str
    note: str
    prewhitened: bool
    noise_note: str
    support: tuple[int, int] | None  # (pixels inside, all pixels)
    data_misfit: float = 1.0
    measure: str = "posterior standard deviation"

    @classmethod
    def of(cls, assembled: AssembledSlice, result: Reconstruction) -> Uncertainty:
        inside = int(torch.count_nonzero(result.support))
        return cls(
            calibrated=result.calibrated,
            factor=result.calibration_factor if result.calibrated else 1.0,
            data=(result.calibration_data or "none") if result.calibrated else "none",
            note=result.calibration_note or "uncalibrated",
            prewhitened=assembled.prewhitened,
            noise_note=assembled.noise_note
            or ("prewhitened" if assembled.prewhitened else "not prewhitened: no noise covariance"),
            support=None if inside == result.support.numel() else (inside, result.support.numel()),
            data_misfit=result.residual_ratio,
            measure=LINEAR_MEASURE if result.std_kind == "linear" else cls.measure,
        )

    def meta(self) -> dict[str, str]:
        region = (
            "all pixels"
            if self.support is None
            else f"object support {self.support[0]} of {self.support[1]} pixels"
        )
        return {
            "UncertaintyMeasure": self.measure,
            "UncertaintyInterval": "mean +/- 2 SD is the nominal 95% interval",
            "UncertaintyCalibrated": "true" if self.calibrated else "false",
            "UncertaintyCalibrationFactor": f"{self.factor:.6g}",
            "UncertaintyCalibrationData": _ascii(self.data),
            "UncertaintyRegion": region,
            "UncertaintyCalibrationNote": _ascii(self.note),
            "UncertaintyDataMisfit": f"{self.data_misfit:.4g}",
        }

    def comment(self) -> str:
        calibration = (
            f"calibrated x{self.factor:.4g} on {_ascii(self.data)}"
            if self.calibrated
            else "uncalibrated"
        )
        region = "" if self.support is None else ", object region only"
        return f"mean +/- 2 SD = nominal 95% interval, {calibration}{region}"


class ImageMaker:
    """Build the images of each reconstructed slice; numbers images 1, 2, ... per stream.

    The intensity scale of integer output is fixed on the first slice and shared by every
    later slice and series of the stream (see :mod:`gadget.display`).

    Args:
        geometry: the stream's encoding (recon matrix and field of view).
        config: which images to send, the base series index, the output type.
    """

    def __init__(self, geometry: EncodingGeometry, config: GadgetConfig) -> None:
        self.geometry = geometry
        self.config = config
        self._index = itertools.count(1)
        self.scale: IntensityScale | None = None
        self.send_uncertainty = config.sends_std()
        if config.send_uncertainty and not self.send_uncertainty:
            log.info(
                "num_samples is 1: no std series is sent (one sample has no spread; "
                "linear_width sends the linear-Gaussian width instead)"
            )

    def __call__(self, assembled: AssembledSlice, result: Reconstruction) -> list[ismrmrd.Image]:
        index = next(self._index)
        mean = self._crop(result.mean.detach().cpu())
        magnitude = mean.abs().to(torch.float32)
        if self.scale is None:
            self.scale = IntensityScale.for_first_slice(
                self.config.output_type, self.config.max_intensity, magnitude
            )
            if self.scale.integer:
                log.info(
                    "intensity scale of this stream: x%s (%s)",
                    self.scale.factor_text,
                    self.scale.output_type,
                )
        scale = self.scale
        uncertainty = Uncertainty.of(assembled, result)
        processing = _processing_meta(result)
        settings = (
            f"{self.config.num_samples} samples, {self.config.sampler}, {self.config.nfe} NFE"
        )
        whitened = "prewhitened" if uncertainty.prewhitened else "not prewhitened"
        images = []
        if self.config.send_magnitude:
            comment = f"AI recon: posterior mean of {settings}, {whitened}"
            images.append(
                self._image(
                    assembled, magnitude, MEAN, index, comment, scale, uncertainty, processing
                )
            )
        if self.send_uncertainty and not result.has_std:
            log.info("slice (%s): no std series: %s", assembled.key, result.calibration_note)
        if self.send_uncertainty and result.has_std:
            std = self._crop(result.std.detach().cpu().to(torch.float32))
            comment = f"uncertainty (posterior SD) of AI_RECON, {settings}, {uncertainty.comment()}, {whitened}"
            images.append(
                self._image(
                    assembled, std, UNCERTAINTY, index, comment, scale, uncertainty, processing
                )
            )
        if self.config.send_complex:
            comment = f"AI recon: complex posterior mean of {settings}, {whitened}, data units"
            raw = IntensityScale("float", 1.0, scale.max_intensity)
            images.append(
                self._image(
                    assembled,
                    mean.to(torch.complex64),
                    COMPLEX,
                    index,
                    comment,
                    raw,
                    uncertainty,
                    processing,
                )
            )
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
        scale: IntensityScale,
        uncertainty: Uncertainty,
        processing: dict[str, str],
    ) -> ismrmrd.Image:
        complex_data = pixels.is_complex()
        if complex_data:
            # Cast here: gadgetron 1.4.1 under numpy 2 cannot convert while writing.
            data = np.ascontiguousarray(pixels.numpy().astype(np.complex64, copy=False))
        else:
            data = scale.pixels(pixels, f"slice ({assembled.key}) {series.description}")
        header = ismrmrd.ImageHeader.from_acquisition(assembled.reference)
        header.image_type = ismrmrd.IMTYPE_COMPLEX if complex_data else ismrmrd.IMTYPE_MAGNITUDE
        header.image_index = index
        header.image_series_index = self.config.image_series_index + series.offset
        header.field_of_view[:] = self.geometry.recon_fov_mm
        key = assembled.key
        for name in ("slice", "contrast", "phase", "repetition", "set", "average"):
            setattr(header, name, getattr(key, name))
        image = ismrmrd.Image(head=header, data=data[None, None])
        center, width = scale.window(pixels.abs())
        if scale.integer:
            comment = f"{comment}, stored = x{scale.factor_text} data units"
        meta = {
            "DataRole": "Image",
            "GADGETRON_DataRole": series.gadgetron_role,
            "ImageComment": comment,
            "GADGETRON_ImageComment": comment,
            "SequenceDescriptionAdditional": series.description,
            "GADGETRON_SeqDescription": series.description,
            "ImageProcessingHistory": PROCESSING_HISTORY,
            "GADGETRON_ImageProcessingHistory": PROCESSING_HISTORY,
            "WindowCenter": center,
            "WindowWidth": width,
            "GADGETRON_WindowCenter": center,
            "GADGETRON_WindowWidth": width,
            "GADGETRON_ScaleRatio": scale.factor_text,
            "GADGETRON_ImageNumber": str(index),
            "Keep_image_geometry": "1",
            "Prewhitened": "true" if uncertainty.prewhitened else "false",
            "PrewhiteningNote": _ascii(uncertainty.noise_note),
        }
        if assembled.calibration_note:
            meta["CoilMapCalibration"] = _ascii(assembled.calibration_note)
        meta.update(processing)
        if series is UNCERTAINTY:
            meta.update(uncertainty.meta())
        image.meta = meta
        return image


def _processing_meta(result: Reconstruction) -> dict[str, str]:
    """The coil map sets and the data-consistency setting the slice was reconstructed with, and
    how a rule chose them (two ESPIRiT sets, ``cg_iters_inside``, ``cg_select``) where one did."""
    meta = {"CoilMapSets": str(result.map_sets)}
    if result.map_note:
        meta["CoilMapSetsNote"] = _ascii(result.map_note)
    if result.cg_iters < 1:  # not recorded (a reconstruction made elsewhere)
        return meta
    meta["DataConsistencyCGIterations"] = str(result.cg_iters)
    if result.cg_note:
        meta["DataConsistencyCGSelection"] = _ascii(result.cg_note)
    return meta


def _ascii(text: str) -> str:
    """ASCII only (libismrmrd's attribute strings); anything else becomes '?'."""
    return text.encode("ascii", "replace").decode("ascii")
