"""The buffered path places lines as BucketToBuffer does: buffers built by its rules (bucket_to_buffer)
give the same k-space as the raw-acquisition path on the same lines."""

from __future__ import annotations

import ismrmrd
import numpy as np
from bucket_to_buffer import asymmetric_echo_adjust, bucket_to_buffer, remove_ro_oversampling
from gadget_helpers import MATRIX, acquisitions_of
from gadgetron.types.recon_data import ReconBit, ReconData

from gadget.assembly import SliceGroup, SliceKey, assemble
from gadget.buffers import slices_of
from gadget.geometry import EncodingGeometry

KEY = SliceKey(0, 0, 0, 0, 0, 0)


def _lines(path, shift: int, cut: int, repetition: int = 0):
    """Imaging lines renumbered k -> k - shift (header centre 16 - shift) and, with ``cut``, the
    first ``cut`` readout samples not acquired (asymmetric echo)."""
    xml, acquisitions = acquisitions_of(path)
    header = ismrmrd.xsd.CreateFromDocument(xml)
    header.encoding[0].encodingLimits.kspace_encoding_step_1.center = MATRIX // 2 - shift
    header.encoding[0].encodingLimits.kspace_encoding_step_1.maximum = MATRIX - 1
    lines = []
    for a in acquisitions:
        if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) or a.idx.kspace_encode_step_1 < shift:
            continue
        if a.idx.repetition != repetition:
            continue
        line = ismrmrd.Acquisition.from_array(np.ascontiguousarray(a.data[:, cut:]))
        line.idx.kspace_encode_step_1 = a.idx.kspace_encode_step_1 - shift
        line.center_sample = a.center_sample - cut
        line.sample_time_us = a.sample_time_us
        lines.append(line)
    return header, lines


def _buffered(header, lines):
    encoded_x = header.encoding[0].encodedSpace.matrixSize.x
    recon_x = header.encoding[0].reconSpace.matrixSize.x
    prepared = [
        remove_ro_oversampling(asymmetric_echo_adjust(a, encoded_x), recon_x) for a in lines
    ]
    buffer = bucket_to_buffer(prepared, header, forref=False)
    (assembled,) = slices_of(
        [ReconData([ReconBit(buffer, None)])], EncodingGeometry.from_header(header)
    )
    return buffer, assembled


def test_centre_off_the_middle_is_placed_as_bucket_to_buffer_does(full_file) -> None:
    header, lines = _lines(full_file, shift=3, cut=0)  # centre 13 of 32 encoded lines
    buffer, buffered = _buffered(header, lines)
    assert buffer.sampling.sampling_limits[1].center == MATRIX // 2  # re-centred by BucketToBuffer
    geometry = EncodingGeometry.from_header(header)
    raw = assemble(SliceGroup(KEY, tuple(lines), None), geometry)
    # the line at the header's centre (k = 13) is the k = 0 row (16) on both paths
    centre_line = next(a for a in lines if a.idx.kspace_encode_step_1 == 13)
    full = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(centre_line.data, axes=-1), norm="ortho"))
    assert np.abs(buffered.kspace[:, MATRIX // 2].numpy()).sum() > 0
    assert np.abs(full).sum() > 0
    np.testing.assert_allclose(buffered.kspace.numpy(), raw.kspace.numpy(), atol=1e-5)
    assert (buffered.mask.numpy() == raw.mask.numpy()).all()
    assert not buffered.mask[:3].any() and buffered.mask[3:].all()  # k = 0..2 not acquired
    assert buffered.reference.idx.kspace_encode_step_1 == centre_line.idx.kspace_encode_step_1


def test_asymmetric_echo_after_adjust_and_oversampling_removal(accelerated_file) -> None:
    # a header with parallelImaging (as scanners write), so BucketToBuffer's readout is the
    # adjusted line's length; 48 of 64 samples, centre sample 16
    header, lines = _lines(accelerated_file, shift=0, cut=16)
    buffer, buffered = _buffered(header, lines)
    assert (
        buffer.data.shape[0] == MATRIX and buffer.headers[MATRIX // 2, 0, 0, 0, 0].discard_pre == 8
    )
    raw = assemble(SliceGroup(KEY, tuple(lines), None), EncodingGeometry.from_header(header))
    mask = buffered.mask.numpy()
    rows = mask.any(axis=1)
    assert 0.55 < rows.mean() < 0.75  # R = 2 plus 12 calibration lines
    assert not mask[:, :8].any() and mask[rows, 8:].all()
    assert (mask == raw.mask.numpy()).all()
    scale = np.abs(raw.kspace.numpy()).max()
    np.testing.assert_allclose(buffered.kspace.numpy(), raw.kspace.numpy(), atol=1e-4 * scale)


def test_a_bad_buffer_is_passed_on_once_and_the_next_reconstructed(full_file) -> None:
    from gadgetron.types.acquisition_bucket import AcquisitionBucket
    from test_gadgetron_listen import fake_reconstructor

    from gadget.connections import MemoryConnection
    from gadget.handlers import handle_recon_data

    header, lines = _lines(full_file, shift=0, cut=0)
    good = bucket_to_buffer(
        [remove_ro_oversampling(a, MATRIX) for a in lines], header, forref=False
    )
    bad = bucket_to_buffer([remove_ro_oversampling(a, MATRIX) for a in lines], header, forref=False)
    bad.data[0, 3] = np.nan
    bad_data = ReconData([ReconBit(bad, None), ReconBit(bad, None)])  # two slices, both bad
    empty_bucket = AcquisitionBucket([], [], [], [], [])
    sent: list[object] = []
    connection = MemoryConnection(
        None, header, [bad_data, empty_bucket, ReconData([ReconBit(good, None)])], sent.append
    )
    summary = handle_recon_data(connection, fake_reconstructor)
    assert sent[0] is bad_data and sum(s is bad_data for s in sent) == 1
    assert [type(s).__name__ for s in sent[1:]] == ["Image", "Image"]
    assert summary.slices_done == 1 and len(summary.failed) == 2
    assert "ReconData bit 1, (N, S, LOC) = (0, 0, 0)" in summary.failed[1]
    assert "non-finite" in summary.failed[0]


def test_a_bit_of_another_encoding_space_is_passed_on_and_says_why(full_file) -> None:
    """BucketToBuffer makes one bit per <encoding>: a bit whose lines belong to encoding space 1
    is not assembled on encoding 0's grid; its ReconData goes downstream once, bit 0 is
    reconstructed."""
    from test_gadgetron_listen import fake_reconstructor

    from gadget.connections import MemoryConnection
    from gadget.handlers import handle_recon_data

    header, lines = _lines(full_file, shift=0, cut=0)
    good = bucket_to_buffer(
        [remove_ro_oversampling(a, MATRIX) for a in lines], header, forref=False
    )
    other = bucket_to_buffer(
        [remove_ro_oversampling(a, MATRIX) for a in lines], header, forref=False
    )
    for h in np.asarray(other.headers).ravel():
        if h.number_of_samples:
            h.encoding_space_ref = 1
    data = ReconData([ReconBit(good, None), ReconBit(other, None)])
    sent: list[object] = []
    summary = handle_recon_data(
        MemoryConnection(None, header, [data], sent.append), fake_reconstructor
    )
    assert [type(s).__name__ for s in sent] == ["Image", "Image", "ReconData"]
    assert sent[2] is data
    assert summary.slices_done == 1 and len(summary.failed) == 1
    assert "ReconData bit 1" in summary.failed[0] and "encoding space 1" in summary.failed[0]
