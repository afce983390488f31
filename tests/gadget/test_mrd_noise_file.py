"""Noise from a separate ISMRMRD file: reading it, and feeding it ahead of a stream."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest
from gadget_helpers import acquisitions_of

from gadget.mrd_input import InputError
from gadget.noise_file import prepend_noise, read_noise_file


def _write(path, acquisitions, xml=b"<ismrmrdHeader/>"):
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(xml)
    for acquisition in acquisitions:
        dataset.append_acquisition(acquisition)
    dataset.close()
    return path


def _noise_and_imaging(path):
    _, acquisitions = acquisitions_of(path)
    noise = [a for a in acquisitions if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    imaging = [a for a in acquisitions if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    return noise, imaging


def test_reads_the_noise_lines_of_a_dependency_file(accelerated_file, tmp_path) -> None:
    noise, imaging = _noise_and_imaging(accelerated_file)
    path = _write(tmp_path / "noise.h5", [imaging[0], *noise])  # an odd line is skipped
    read = read_noise_file(path)
    assert len(read) == len(noise)
    for got, expected in zip(read, noise, strict=True):
        np.testing.assert_array_equal(got.data, expected.data)


def test_unusable_noise_files_are_named(accelerated_file, tmp_path) -> None:
    _, imaging = _noise_and_imaging(accelerated_file)
    no_noise = _write(tmp_path / "imaging.h5", imaging[:3])
    with pytest.raises(
        InputError,
        match=r"imaging.h5:/dataset/data: no acquisition is flagged ACQ_IS_NOISE_MEASUREMENT",
    ):
        read_noise_file(no_noise)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"text.h5: not an HDF5 file \(noise file\)"):
        read_noise_file(tmp_path / "text.h5")
    with pytest.raises(
        InputError,
        match=r"imaging.h5: no group /other; expected an ISMRMRD dataset group there \(top-level entries: \[.dataset.\]\)",
    ):
        read_noise_file(no_noise, group="other")


def test_prepended_only_where_the_stream_has_no_noise_of_its_own(accelerated_file) -> None:
    noise, imaging = _noise_and_imaging(accelerated_file)
    marker = object()
    fed = list(prepend_noise([marker, *imaging], noise))
    assert (
        fed[0] is marker and fed[1 : 1 + len(noise)] == noise and fed[1 + len(noise) :] == imaging
    )
    own = [*noise, *imaging]
    assert list(prepend_noise(own, noise[:1])) == own
    fewer = ismrmrd.Acquisition.from_array(np.ones((2, 8), np.complex64))
    assert list(prepend_noise([fewer], noise)) == [fewer]  # 2 channels, the noise has 4
    assert list(prepend_noise(imaging, [])) == imaging
