"""What the ISMRMRD header says about the Cartesian k-space grid, read once and validated."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import ismrmrd

log = logging.getLogger(__name__)

# the largest interleave followed: up to this many slices of a location wait whole for its window
MAX_INTERLEAVE = 16


class HeaderError(ValueError):
    """The ISMRMRD header lacks what is needed to place acquisitions on a grid."""


@dataclass(frozen=True)
class GridLimits:
    """What a header (and the acquisitions it describes) may ask for before anything is allocated.

    Attributes:
        max_matrix: largest matrix size along any axis (encoded and recon space).
        max_pixels: largest reconstruction grid, ky x kx (1024 x 1024 costs ~55 s a slice on a CPU).
        max_channels: most receiver channels of one acquisition.
        memory_budget_bytes: most memory the assembly of one slice may hold.
    """

    max_matrix: int = 4096
    max_pixels: int = 1024 * 1024
    max_channels: int = 256
    memory_budget_bytes: int = 4 * 2**30

    def __post_init__(self) -> None:
        for name in ("max_matrix", "max_pixels", "max_channels", "memory_budget_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"GridLimits.{name} = {getattr(self, name)}: expected >= 1")


@dataclass(frozen=True)
class EncodingGeometry:
    """Encoding 0 of an ISMRMRD header.

    Attributes:
        encoded_matrix: (x, y, z) of the encoded space; x includes readout oversampling.
        recon_matrix: (x, y, z) of the reconstructed image.
        encoded_fov_mm, recon_fov_mm: fields of view (x, y, z) in mm.
        ky_center: ``encodingLimits.kspace_encoding_step_1.center`` (the line at k = 0).
        ky_limits: (minimum, maximum) encode-step-1 index that may be measured.
        separate_calibration: the header's parallelImaging calibrationMode is ``separate`` or
            ``external``: calibration lines are not image data (other contrast or resolution).
        interleave: calibrationMode ``interleaved`` (TSENSE-like: successive repetitions or
            phases sample shifted copies of one undersampled pattern): how many successive ones
            together sample every line, the header's accelerationFactor.kspace_encoding_step_1;
            1 for any other mode.
        interleaving_dimension: the counter the pattern moves along, the header's
            parallelImaging.interleavingDimension (``phase``, ``repetition``, ``contrast`` or
            ``average``); empty when the header leaves it out or says ``other``.
    """

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    ky_center: int
    ky_limits: tuple[int, int]
    separate_calibration: bool = False
    interleave: int = 1
    interleaving_dimension: str = ""

    @property
    def readout_oversampling(self) -> bool:
        """True when the readout of the encoded space is longer than that of the recon space."""
        return self.encoded_matrix[0] > self.recon_matrix[0]

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(ky, kx) of the k-space the gadget reconstructs: encoded phase lines (or more when the
        recon matrix asks for zero-filled interpolation) by the readout without oversampling."""
        return max(self.encoded_matrix[1], self.recon_matrix[1]), self.recon_matrix[0]

    @classmethod
    def from_header(
        cls, header: ismrmrd.xsd.ismrmrdHeader, limits: GridLimits | None = None
    ) -> EncodingGeometry:
        """Read encoding 0; a missing, non-integer or out-of-bounds matrix, field of view or
        encoding limit raises HeaderError naming the element and what was expected."""
        limits = limits or GridLimits()
        if header is None or not getattr(header, "encoding", None):
            raise HeaderError("ISMRMRD header: no <encoding> section")
        encoding = header.encoding[0]
        trajectory = getattr(encoding.trajectory, "value", encoding.trajectory)
        if trajectory not in (None, "cartesian"):
            raise HeaderError(
                f"ISMRMRD header: trajectory {trajectory!r}; this gadget reconstructs Cartesian data only"
            )
        spaces: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {}
        for name in ("encodedSpace", "reconSpace"):
            space = getattr(encoding, name)
            if space is None or space.matrixSize is None or space.fieldOfView_mm is None:
                raise HeaderError(
                    f"ISMRMRD header: encoding[0].{name} needs matrixSize and fieldOfView_mm"
                )
            size, fov = space.matrixSize, space.fieldOfView_mm
            where = f"encoding[0].{name}"
            z = 1 if size.z is None else size.z
            matrix = (
                _count(f"{where}.matrixSize.x", size.x, 1, limits.max_matrix),
                _count(f"{where}.matrixSize.y", size.y, 1, limits.max_matrix),
                _count(f"{where}.matrixSize.z", z, 1, limits.max_matrix),
            )
            fovs = (
                _length(f"{where}.fieldOfView_mm.x", fov.x),
                _length(f"{where}.fieldOfView_mm.y", fov.y),
                _length(f"{where}.fieldOfView_mm.z", fov.z),
            )
            spaces[name] = matrix, fovs
        limits_element = encoding.encodingLimits
        step1 = None if limits_element is None else limits_element.kspace_encoding_step_1
        if step1 is None or step1.center is None or step1.maximum is None:
            raise HeaderError(
                "ISMRMRD header: encoding[0].encodingLimits.kspace_encoding_step_1 (minimum, maximum, "
                "center) is missing; it is needed to place phase-encode lines"
            )
        where = "encoding[0].encodingLimits.kspace_encoding_step_1"
        ky_min = _count(f"{where}.minimum", step1.minimum or 0, 0, 65535)
        ky_max = _count(f"{where}.maximum", step1.maximum, ky_min, 65535)
        ky_center = _count(f"{where}.center", step1.center, ky_min, ky_max)
        if spaces["encodedSpace"][0][2] != 1:
            raise HeaderError(
                f"ISMRMRD header: encoded matrix z = {spaces['encodedSpace'][0][2]}; expected z = 1 "
                "(this gadget reconstructs 2D encodings only)"
            )
        if spaces["reconSpace"][0][0] > spaces["encodedSpace"][0][0]:
            raise HeaderError(
                f"ISMRMRD header: recon matrix x {spaces['reconSpace'][0][0]} exceeds encoded matrix x "
                f"{spaces['encodedSpace'][0][0]}; readout interpolation is not supported"
            )
        parallel = encoding.parallelImaging
        mode = (
            None
            if parallel is None
            else getattr(parallel.calibrationMode, "value", parallel.calibrationMode)
        )
        geometry = cls(
            encoded_matrix=spaces["encodedSpace"][0],
            recon_matrix=spaces["reconSpace"][0],
            encoded_fov_mm=spaces["encodedSpace"][1],
            recon_fov_mm=spaces["reconSpace"][1],
            ky_center=ky_center,
            ky_limits=(ky_min, ky_max),
            separate_calibration=mode in ("separate", "external"),
            interleave=_interleave(mode, parallel),
            interleaving_dimension=_interleaving_dimension(parallel),
        )
        ny, nx = geometry.grid_shape
        if ny * nx > limits.max_pixels:
            raise HeaderError(
                f"ISMRMRD header: a {ny} x {nx} reconstruction grid (encoding[0] encodedSpace / "
                f"reconSpace matrixSize) has {ny * nx} pixels; at most {limits.max_pixels} are "
                "reconstructed"
            )
        return geometry

    def slice_bytes(self, channels: int) -> int:
        """Bytes the assembly of one slice of ``channels`` coils holds (k-space sums of both grids,
        the counts and the cropped k-space), the largest allocation before reconstruction."""
        ny, nx = self.grid_shape
        grids = 2 if self.separate_calibration else 1
        return grids * ny * (self.encoded_matrix[0] * (8 * channels + 4) + nx * 8 * channels)

    def check_channels(self, channels: int, where: str, limits: GridLimits | None = None) -> None:
        """Raise HeaderError unless ``channels`` (of ``where``) is within ``limits`` and one slice
        of that many channels fits the memory budget."""
        limits = limits or GridLimits()
        if not 1 <= channels <= limits.max_channels:
            raise HeaderError(f"{where}: {channels} channels, expected 1 to {limits.max_channels}")
        needed = self.slice_bytes(channels)
        if needed > limits.memory_budget_bytes:
            ny = self.grid_shape[0]
            raise HeaderError(
                f"{where}: one slice of {channels} channels on the {ny} x {self.encoded_matrix[0]} "
                f"encoded grid needs {needed / 2**30:.1f} GiB, more than the "
                f"{limits.memory_budget_bytes / 2**30:.1f} GiB budget"
            )


def _interleave(mode: object, parallel: object) -> int:
    """The interleave of calibration mode ``interleaved`` (its acceleration along ky), else 1."""
    if mode != "interleaved":
        return 1
    factor = getattr(getattr(parallel, "accelerationFactor", None), "kspace_encoding_step_1", None)
    where = "encoding[0].parallelImaging.accelerationFactor.kspace_encoding_step_1"
    if factor is None:
        log.warning(
            "ISMRMRD header: calibrationMode interleaved without %s; not interleaving", where
        )
        return 1
    try:
        return _count(where, factor, 1, MAX_INTERLEAVE)
    except HeaderError as error:  # a hint for the coil maps only: the images do not need it
        log.warning("%s; not interleaving", error)
        return 1


def _interleaving_dimension(parallel: object) -> str:
    """``phase``, ``repetition``, ``contrast`` or ``average`` from parallelImaging, else empty."""
    value = getattr(parallel, "interleavingDimension", None)
    name = getattr(value, "value", value)
    return name if name in ("phase", "repetition", "contrast", "average") else ""


def _count(name: str, value: object, low: int, high: int) -> int:
    """``value`` as an integer in [low, high], or HeaderError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise HeaderError(f"ISMRMRD header: {name} = {value!r}: expected an integer")
    try:
        number = int(value)
    except ValueError:
        raise HeaderError(
            f"ISMRMRD header: {name} = {value!r}: expected an integer from {low} to {high}"
        ) from None
    if not low <= number <= high:
        raise HeaderError(
            f"ISMRMRD header: {name} = {number}: expected an integer from {low} to {high}"
        )
    return number


def _length(name: str, value: object) -> float:
    """A field of view in mm: a finite number >= 0, or HeaderError naming ``name``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HeaderError(f"ISMRMRD header: {name} = {value!r}: expected a length in mm") from None
    if not math.isfinite(number) or number < 0:
        raise HeaderError(f"ISMRMRD header: {name} = {value!r}: expected a finite length >= 0 mm")
    return number
