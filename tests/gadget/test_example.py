"""The bundled example file is what the README says it is."""

from __future__ import annotations

import ismrmrd
from gadget_helpers import EXAMPLE, acquisitions_of

from gadget.assembly import assemble, group_slices
from gadget.geometry import EncodingGeometry
from gadget.stream import cartesian_acquisitions, noise_adjustment


def test_bundled_example_is_a_small_accelerated_multicoil_scan() -> None:
    assert EXAMPLE.stat().st_size < 3_000_000
    xml, acquisitions = acquisitions_of(EXAMPLE)
    geometry = EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(xml))
    assert geometry.encoded_matrix == (384, 192, 1) and geometry.recon_matrix == (192, 192, 1)
    flags = [a.flags for a in acquisitions]
    assert acquisitions[0].is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert any(a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) for a in acquisitions)
    assert any(a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) for a in acquisitions)
    assert len(flags) == 67
    (group,) = list(
        group_slices(noise_adjustment(cartesian_acquisitions(acquisitions, list().append)))
    )
    assembled = assemble(group, geometry)
    assert assembled.kspace.shape == (8, 192, 192)
    rows = assembled.mask[:, 0]
    assert int(rows.sum()) == 66 and bool(rows[96 - 12 : 96 + 12].all())
    assert assembled.noise_covariance is not None and assembled.noise_covariance.shape == (8, 8)
