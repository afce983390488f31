"""Gadgetron's Cartesian pre-processing rebuilt in numpy from its source, for the buffered-path tests.

Written from Gadgetron's ``gadgets/mri_core`` (read, not copied): AsymmetricEchoAdjustROGadget
(pads a short readout to the encoded length with zeros before it and sets discard_pre,
center_sample = samples / 2), RemoveROOversamplingGadget (crop in image space, counters divided
by the ratio) and BucketToBufferGadget for one N/S/LOC: E1 rows ``k + NE1/2 - centre`` for image
data and embedded reference lines (raw ``k`` for interleaved ones, ``k - first k`` for separate
ones), readout offsets ``discard_pre`` for centred full-length lines, zero-initialised headers,
and its SamplingDescription.
"""

from __future__ import annotations

import ismrmrd
import numpy as np
from gadgetron.types.recon_data import ReconBuffer, SamplingDescription


def asymmetric_echo_adjust(acq: ismrmrd.Acquisition, encoded_x: int) -> ismrmrd.Acquisition:
    samples, centre = acq.number_of_samples, acq.center_sample
    if 2 * centre == samples or centre >= samples or samples >= encoded_x:
        return acq
    data = np.zeros((acq.active_channels, encoded_x), np.complex64)
    head = acq.getHead()
    if 2 * centre < samples:  # zeros before
        data[:, encoded_x - samples :] = acq.data
        head.discard_pre, head.discard_post = encoded_x - samples, 0
    else:
        data[:, :samples] = acq.data
        head.discard_pre, head.discard_post = 0, encoded_x - samples
    head.number_of_samples, head.center_sample = encoded_x, encoded_x // 2
    out = ismrmrd.Acquisition(head)
    out.data[:] = data
    return out


def remove_ro_oversampling(acq: ismrmrd.Acquisition, recon_x: int) -> ismrmrd.Acquisition:
    samples = acq.number_of_samples
    ratio = samples // recon_x
    shift = np.fft.ifftshift
    image = np.fft.fftshift(np.fft.ifft(shift(acq.data, axes=-1), axis=-1, norm="ortho"), axes=-1)
    first = (samples - recon_x) // 2
    cropped = image[:, first : first + recon_x]
    kspace = np.fft.fftshift(np.fft.fft(shift(cropped, axes=-1), axis=-1, norm="ortho"), axes=-1)
    head = acq.getHead()
    head.number_of_samples = recon_x
    head.center_sample = acq.center_sample // ratio
    head.discard_pre, head.discard_post = acq.discard_pre // ratio, acq.discard_post // ratio
    out = ismrmrd.Acquisition(head)
    out.data[:] = kspace.astype(np.complex64)
    return out


def bucket_to_buffer(
    acquisitions: list[ismrmrd.Acquisition], header: ismrmrd.xsd.ismrmrdHeader, forref: bool
) -> ReconBuffer:
    """One (N, S, LOC) ReconBuffer as BucketToBufferGadget fills it (Cartesian, 2D)."""
    encoding = header.encoding[0]
    limits = encoding.encodingLimits.kspace_encoding_step_1
    matrix = encoding.encodedSpace.matrixSize
    mode = encoding.parallelImaging.calibrationMode.value if encoding.parallelImaging else None
    first = acquisitions[0]
    ks = [a.idx.kspace_encode_step_1 for a in acquisitions]
    separate = forref and mode in ("separate", "external")
    if encoding.parallelImaging:
        ne1 = max(ks) - min(ks) + 1 if separate else matrix.y
        ne0 = first.number_of_samples
    else:
        ne1 = limits.maximum - limits.minimum + 1
        ne0 = first.number_of_samples - first.discard_pre - first.discard_post
    centred = not forref or mode == "embedded"
    offset_e1 = matrix.y // 2 - limits.center
    sampling = SamplingDescription()
    sampling.encoded_matrix[:] = (encoding.reconSpace.matrixSize.x, matrix.y, 1)
    sampling.sampling_limits[0].min = first.discard_pre
    sampling.sampling_limits[0].max = first.number_of_samples - first.discard_post - 1
    sampling.sampling_limits[0].center = first.number_of_samples // 2
    if centred:
        lo, hi, centre = limits.minimum + offset_e1, limits.maximum + offset_e1, matrix.y // 2
    else:
        lo, hi, centre = limits.minimum, limits.maximum, limits.center
    sampling.sampling_limits[1].min, sampling.sampling_limits[1].max = lo, hi
    sampling.sampling_limits[1].center = centre
    channels = first.active_channels
    data = np.zeros((ne0, ne1, 1, channels, 1, 1, 1), np.complex64)
    headers = np.empty((ne1, 1, 1, 1, 1), dtype=object)
    for e1 in range(ne1):
        headers[e1, 0, 0, 0, 0] = ismrmrd.AcquisitionHeader()
    for acq in acquisitions:
        samples, centre_sample = acq.number_of_samples, acq.center_sample
        if samples == ne0 and (centre_sample == samples // 2 or centre_sample >= samples):
            offset = acq.discard_pre
        else:
            offset = sampling.sampling_limits[0].center - centre_sample
        count = samples - acq.discard_pre - acq.discard_post
        assert offset >= 0 and ne0 - count - offset >= 0, "does not fit (as Gadgetron throws)"
        k = acq.idx.kspace_encode_step_1
        e1 = k + offset_e1 if centred else (k - min(ks) if separate and min(ks) > 0 else k)
        if not 0 <= e1 < ne1:
            continue  # Gadgetron warns and drops the line
        data[offset : offset + count, e1, 0, :, 0, 0, 0] = acq.data[
            :, acq.discard_pre : acq.discard_pre + count
        ].T
        headers[e1, 0, 0, 0, 0] = acq.getHead()
    return ReconBuffer(data, None, None, headers, sampling)
