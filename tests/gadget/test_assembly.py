"""Stream stages on real ismrmrd-tools files: pass-through, noise, grouping, placement, oversampling."""

from __future__ import annotations

import math

import ismrmrd
import numpy as np
import pytest
import torch
from gadget_helpers import MATRIX, acquisitions_of

from diffusion_core.uncertainty import mask_sampling
from gadget.assembly import AssemblyError, SliceGroup, SliceKey, assemble, group_slices
from gadget.geometry import EncodingGeometry, HeaderError
from gadget.stream import NoiseStatistics, cartesian_acquisitions, noise_adjustment


def _geometry(xml: bytes) -> EncodingGeometry:
    return EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(xml))


def _groups(acquisitions):
    return list(group_slices(noise_adjustment(cartesian_acquisitions(acquisitions, list().append))))


def _reference_slice(acquisitions, geometry) -> np.ndarray:
    """Independent numpy placement + readout crop of one full slice: (coils, ky, kx)."""
    ny, nx_os, nx = MATRIX, geometry.encoded_matrix[0], geometry.recon_matrix[0]
    grid = np.zeros((acquisitions[0].active_channels, ny, nx_os), dtype=np.complex128)
    for a in acquisitions:
        grid[:, a.idx.kspace_encode_step_1 - geometry.ky_center + ny // 2] = a.data
    shift = np.fft.ifftshift
    image = np.fft.fftshift(np.fft.ifft(shift(grid, axes=-1), axis=-1, norm="ortho"), axes=-1)
    image = image[..., (nx_os - nx) // 2 : (nx_os - nx) // 2 + nx]
    return np.fft.fftshift(np.fft.fft(shift(image, axes=-1), axis=-1, norm="ortho"), axes=-1)


def test_full_slice_matches_an_independent_placement(full_file) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    geometry = _geometry(xml)
    (group,) = _groups(acquisitions)
    assembled = assemble(group, geometry)
    assert (
        assembled.kspace.shape == (4, MATRIX, MATRIX) and geometry.encoded_matrix[0] == 2 * MATRIX
    )
    assert float(assembled.mask.mean()) == 1.0
    lines = [a for a in acquisitions if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    expected = _reference_slice(lines, geometry)
    np.testing.assert_allclose(
        assembled.kspace.numpy(), expected, atol=1e-4 * np.abs(expected).max()
    )
    assert assembled.reference.idx.kspace_encode_step_1 == geometry.ky_center


def test_accelerated_file_groups_by_repetition_with_noise(accelerated_file) -> None:
    xml, acquisitions = acquisitions_of(accelerated_file)
    geometry = _geometry(xml)
    groups = _groups(acquisitions)
    assert [g.key.repetition for g in groups] == [0, 1]
    for group in groups:
        assembled = assemble(group, geometry)
        rows = assembled.mask[:, 0].numpy()
        assert 0.55 < rows.mean() < 0.75  # every 2nd line plus 12 ACS lines of 32
        assert rows[MATRIX // 2 - 6 : MATRIX // 2 + 6].all()
        assert assembled.noise_covariance is not None and assembled.noise_covariance.shape == (4, 4)
        # -n 0.02 is the per-channel std of the noise scan: diagonal ~ 2 * 0.02^2 (complex)
        diagonal = assembled.noise_covariance.diagonal().real
        assert torch.allclose(diagonal, torch.full((4,), 2 * 0.02**2), rtol=0.4)
        assert not (assembled.kspace.abs().sum(0) > 0)[rows == 0].any()


def test_slices_are_released_before_the_stream_ends(accelerated_file) -> None:
    _, acquisitions = acquisitions_of(accelerated_file)
    consumed = []

    def stream():
        for a in acquisitions:
            consumed.append(a)
            yield a

    first = next(group_slices(noise_adjustment(cartesian_acquisitions(stream(), list().append))))
    assert first.key.repetition == 0
    assert len(consumed) < len(acquisitions)
    assert consumed[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)


def test_partial_fourier_and_asymmetric_echo_stay_unmeasured(full_file) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    geometry = _geometry(xml)
    lines = []
    for a in acquisitions[1:]:
        if a.idx.kspace_encode_step_1 < 8:  # partial Fourier: the first 8 lines are not acquired
            continue
        cut = 16  # asymmetric echo: the first 16 of 64 readout samples are not acquired
        short = ismrmrd.Acquisition.from_array(np.ascontiguousarray(a.data[:, cut:]))
        short.idx.kspace_encode_step_1 = a.idx.kspace_encode_step_1
        short.center_sample = a.center_sample - cut
        short.sample_time_us = a.sample_time_us
        lines.append(short)
    assembled = assemble(SliceGroup(SliceKey(0, 0, 0, 0, 0, 0), tuple(lines), None), geometry)
    mask = assembled.mask.numpy()
    assert not mask[:8].any() and mask[8:].any(axis=1).all()
    measured_columns = mask[8:].all(axis=0)
    assert not measured_columns[: cut // 2].any() and measured_columns[cut // 2 + 1 :].all()
    assert (assembled.kspace.abs().numpy()[:, mask == 0] == 0).all()
    # still readout lines to the std's calibration (the 1D entry, not the 2D Poisson one)
    assert mask_sampling(assembled.mask) == "1d"


def test_inconsistent_channels_and_nan_samples_name_the_line(full_file) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    geometry = _geometry(xml)
    lines = list(acquisitions[1:])
    odd = ismrmrd.Acquisition.from_array(np.ones((3, 64), np.complex64))
    odd.idx.kspace_encode_step_1 = 9  # scan_counter stays 0, as on every ismrmrd-tools line
    indices = (1, 2, 3, 4, 5, 42)  # the lines' places in the stream
    group = SliceGroup(SliceKey(0, 0, 0, 0, 0, 0), (*lines[:5], odd), None, indices)
    with pytest.raises(
        AssemblyError,
        match=r"acquisition 42 \(kspace_encode_step_1=9, slice=0.* has 3 channels, expected 4",
    ):
        assemble(group, geometry)
    bad = ismrmrd.Acquisition.from_array(np.full((4, 64), np.nan, np.complex64))
    bad.idx.repetition = 3
    group = SliceGroup(SliceKey(0, 0, 0, 0, 0, 0), (*lines[:5], bad), None, (1, 2, 3, 4, 5, 77))
    with pytest.raises(AssemblyError, match=r"acquisition 77 \(.*repetition=3.*\) has non-finite"):
        assemble(group, geometry)


def test_header_without_encoding_limits_is_a_header_error(full_file) -> None:
    xml, _ = acquisitions_of(full_file)
    header = ismrmrd.xsd.CreateFromDocument(xml)
    header.encoding[0].encodingLimits.kspace_encoding_step_1 = None
    with pytest.raises(HeaderError, match="kspace_encoding_step_1"):
        EncodingGeometry.from_header(header)


def test_unhandled_items_are_forwarded_in_order() -> None:
    imaging = ismrmrd.Acquisition.from_array(np.zeros((2, 8), np.complex64))
    radial = ismrmrd.Acquisition.from_array(
        np.zeros((2, 8), np.complex64), np.zeros((8, 2), np.float32)
    )
    navigator = ismrmrd.Acquisition.from_array(np.zeros((2, 8), np.complex64))
    navigator.set_flag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    waveform = ismrmrd.Waveform.from_array(np.zeros((1, 4), np.uint32))
    forwarded: list[object] = []
    kept = list(cartesian_acquisitions([waveform, imaging, radial, navigator], forwarded.append))
    assert [line.acquisition for line in kept] == [imaging] and kept[0].stream_index == 0
    assert forwarded == [waveform, radial, navigator]


def _line_with(traj: np.ndarray) -> ismrmrd.Acquisition:
    return ismrmrd.Acquisition.from_array(
        np.zeros((2, len(traj)), np.complex64), traj.astype(np.float32)
    )


def test_lines_with_cartesian_coordinates_are_reconstructed_other_trajectories_passed_on() -> None:
    """ismrmrd-tools' ``-k`` stores each Cartesian line's (kx, ky): the line is placed by its
    counters, as in Gadgetron's Cartesian chains; a spoke or a curved line is passed on."""
    kx = np.linspace(-0.5, 0.5, 8, endpoint=False)
    cartesian = _line_with(np.stack([kx, np.full(8, -0.25)], 1))
    reversed_3d = _line_with(np.stack([kx[::-1], np.full(8, 0.1), np.full(8, 0.3)], 1))
    spoke = _line_with(np.stack([kx * np.cos(0.3), kx * np.sin(0.3)], 1))
    curved = _line_with(np.stack([kx, 0.01 * kx**2], 1))
    backtracking = _line_with(np.stack([np.r_[kx[:4], kx[:4]], np.zeros(8)], 1))
    forwarded: list[object] = []
    lines = [cartesian, reversed_3d, spoke, curved, backtracking]
    kept = list(cartesian_acquisitions(lines, forwarded.append))
    assert [line.acquisition for line in kept] == [cartesian, reversed_3d]
    assert forwarded == [spoke, curved, backtracking]


def test_noise_covariance_scales_with_dwell_time() -> None:
    statistics = NoiseStatistics(torch.eye(2, dtype=torch.complex64), dwell_time_us=5.0)
    assert torch.allclose(
        statistics.for_dwell_time(10.0), 0.5 * torch.eye(2, dtype=torch.complex64)
    )
    # an unknown dwell time (0, negative, NaN, Inf in a line's or the noise scan's header)
    # leaves the covariance as measured: a NaN once reached the CG tolerance as "atol -nan"
    for dwell in (0.0, -1.0, math.nan, math.inf):
        assert torch.equal(statistics.for_dwell_time(dwell), statistics.covariance)
        unknown = NoiseStatistics(statistics.covariance, dwell_time_us=dwell)
        assert torch.equal(unknown.for_dwell_time(10.0), statistics.covariance)


def test_out_of_order_lines_are_placed_by_their_counters(full_file) -> None:
    xml, acquisitions = acquisitions_of(full_file)
    geometry = _geometry(xml)
    (group,) = _groups(acquisitions)
    lines = list(group.acquisitions)
    order = np.random.default_rng(0).permutation(
        len(lines) - 1
    )  # the LAST_IN_SLICE line stays last
    shuffled = [lines[i] for i in order] + [lines[-1]]
    (regrouped,) = _groups([acquisitions[0], *shuffled])
    assert [a.idx.kspace_encode_step_1 for a in regrouped.acquisitions] != sorted(
        a.idx.kspace_encode_step_1 for a in regrouped.acquisitions
    )
    assert regrouped.indices == tuple(range(1, len(lines) + 1))  # places in the stream
    np.testing.assert_array_equal(
        assemble(regrouped, geometry).kspace.numpy(), assemble(group, geometry).kspace.numpy()
    )
