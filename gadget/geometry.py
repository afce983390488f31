"""What the ISMRMRD header says about the Cartesian k-space grid, read once and validated."""

from __future__ import annotations

from dataclasses import dataclass

import ismrmrd


class HeaderError(ValueError):
    """The ISMRMRD header lacks what is needed to place acquisitions on a grid."""


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
    """

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    ky_center: int
    ky_limits: tuple[int, int]
    separate_calibration: bool = False

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
    def from_header(cls, header: ismrmrd.xsd.ismrmrdHeader) -> EncodingGeometry:
        """Read encoding 0; a missing matrix, field of view or encoding limit raises HeaderError."""
        if header is None or not header.encoding:
            raise HeaderError("ISMRMRD header: no <encoding> section")
        encoding = header.encoding[0]
        trajectory = getattr(encoding.trajectory, "value", encoding.trajectory)
        if trajectory not in (None, "cartesian"):
            raise HeaderError(
                f"ISMRMRD header: trajectory {trajectory!r}; this gadget reconstructs Cartesian data only"
            )
        spaces = {}
        for name in ("encodedSpace", "reconSpace"):
            space = getattr(encoding, name)
            if space is None or space.matrixSize is None or space.fieldOfView_mm is None:
                raise HeaderError(
                    f"ISMRMRD header: encoding[0].{name} needs matrixSize and fieldOfView_mm"
                )
            matrix = (
                int(space.matrixSize.x),
                int(space.matrixSize.y),
                int(space.matrixSize.z or 1),
            )
            if min(matrix) < 1:
                raise HeaderError(
                    f"ISMRMRD header: encoding[0].{name}.matrixSize {matrix}: expected positive sizes"
                )
            fov = space.fieldOfView_mm
            spaces[name] = matrix, (float(fov.x), float(fov.y), float(fov.z))
        limits = encoding.encodingLimits
        step1 = None if limits is None else limits.kspace_encoding_step_1
        if step1 is None or step1.center is None or step1.maximum is None:
            raise HeaderError(
                "ISMRMRD header: encoding[0].encodingLimits.kspace_encoding_step_1 (minimum, maximum, "
                "center) is missing; it is needed to place phase-encode lines"
            )
        if spaces["encodedSpace"][0][2] != 1:
            raise HeaderError(
                f"ISMRMRD header: encoded matrix z = {spaces['encodedSpace'][0][2]}; only 2D (z = 1) "
                "encodings are reconstructed"
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
        return cls(
            encoded_matrix=spaces["encodedSpace"][0],
            recon_matrix=spaces["reconSpace"][0],
            encoded_fov_mm=spaces["encodedSpace"][1],
            recon_fov_mm=spaces["reconSpace"][1],
            ky_center=int(step1.center),
            ky_limits=(int(step1.minimum or 0), int(step1.maximum)),
            separate_calibration=mode in ("separate", "external"),
        )
