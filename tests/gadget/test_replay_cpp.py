"""The replay's output read by the C++ ISMRMRD library (libismrmrd), as C++ clients read it."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from cpp_reader import compile_reader, read_with_cpp
from fake_recon import ZeroFilledRss
from gadget_helpers import EXAMPLE, MATRIX

from gadget.config import GadgetConfig
from gadget.replay import replay


@pytest.fixture(scope="module")
def cpp_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_reader(tmp_path_factory.mktemp("cpp"))


def _with_extras(source: Path, path: Path) -> Path:
    """``source`` plus what the replay must keep: a waveform, an image written by ismrmrd-python
    (UTF-8 attribute strings) and NaN samples in one line of repetition 0 (that slice fails)."""
    path.write_bytes(source.read_bytes())
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dataset:
        waveform = ismrmrd.Waveform.from_array(np.arange(10, dtype=np.uint32).reshape(2, 5))
        waveform.waveform_id = 7
        dataset.append_waveform(waveform)
        image = ismrmrd.Image.from_array(np.arange(12, dtype=np.float32).reshape(3, 4))
        image.meta = {"DataRole": "Image", "Comment": "scanner image ä"}
        dataset.append_image("image_1", image)
        acquisition = dataset.read_acquisition(5)
        acquisition.data[0, 0] = np.nan
        dataset.write_acquisition(acquisition, 5)
    return path


@pytest.mark.timeout(120)
def test_cpp_library_reads_every_part_of_the_output(accelerated_file, cpp_reader, tmp_path) -> None:
    source = _with_extras(accelerated_file, tmp_path / "in.h5")
    out = tmp_path / "out.h5"
    config = GadgetConfig(send_complex=True, device="cpu")
    result = replay(source, out, config, progress=False, reconstructor=ZeroFilledRss())
    assert result.run.slices_done == 1 and len(result.run.failed) == 1
    view = read_with_cpp(cpp_reader, out, "image_1", "image_2", "image_3", "input_image_1")
    assert view.header["encoded"] == f"{2 * MATRIX}x{MATRIX}x1"
    assert view.header["recon"] == f"{MATRIX}x{MATRIX}x1"
    with ismrmrd.Dataset(str(out), "dataset", create_if_needed=False, mode="r") as python:
        for variable, data_type in (("image_1", 5), ("image_2", 5), ("image_3", 7)):
            (fields,) = view.images[variable]
            image = python.read_image(variable, 0)
            assert int(fields["data_type"]) == data_type == image.data_type
            assert (int(fields["series"]), int(fields["index"])) == (
                image.image_series_index,
                image.image_index,
            )
            assert fields["repetition"] == "1" and fields["matrix"] == f"{MATRIX}x{MATRIX}x1"
            cpp_pixels = np.array(view.pixels[variable, 0], dtype=np.complex64)
            np.testing.assert_array_equal(cpp_pixels, image.data.ravel().astype(np.complex64))
            assert np.abs(cpp_pixels).max() > 0
            meta = view.meta[variable, 0]
            assert meta["DataRole"] == [image.meta["DataRole"]]
            assert meta["GADGETRON_ImageProcessingHistory"] == ["PYTHON", "AI_RECON"]
            assert meta["ImageComment"] == [image.meta["ImageComment"]]
        assert view.meta["image_2", 0]["GADGETRON_DataRole"] == ["STD_MAP"]
        # nothing lost: the failed slice's raw lines, the waveform, the input's own image
        raw = [python.read_acquisition(i) for i in range(python.number_of_acquisitions())]
    with ismrmrd.Dataset(str(source), "dataset", create_if_needed=False, mode="r") as original:
        lines = [original.read_acquisition(i) for i in range(original.number_of_acquisitions())]
    failed = [
        a
        for a in lines
        if a.idx.repetition == 0 and not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    ]
    assert len(view.acquisitions) == len(raw) == len(failed) == result.passed_through
    for cpp, python_acq, original_acq in zip(view.acquisitions, raw, failed, strict=True):
        assert int(cpp["line"]) == original_acq.idx.kspace_encode_step_1
        np.testing.assert_array_equal(python_acq.data, original_acq.data)
    assert view.waveforms == [{"id": "7", "channels": "2", "samples": "5", "sum": "45"}]
    (copied,) = view.images["input_image_1"]
    assert copied["matrix"] == "4x3x1"
    assert view.meta["input_image_1", 0]["Comment"] == ["scanner image ä"]
    assert [complex(v) for v in view.pixels["input_image_1", 0]] == list(range(12))
    assert any("waveform" in line for line in result.kept)
    assert any("input_image_1" in line for line in result.kept)
    with h5py.File(out, "r") as f:  # the other datasets of the ismrmrd-tools file, unchanged
        for name in ("coil_images", "csm", "phantom"):
            with h5py.File(source, "r") as g:
                np.testing.assert_array_equal(f["dataset"][name][()], g["dataset"][name][()])


@pytest.mark.timeout(60)
def test_ismrmrd_python_append_image_is_what_the_cpp_library_cannot_read(
    cpp_reader, tmp_path
) -> None:
    """The reason for gadget.mrd_output: ismrmrd-python's UTF-8 attribute strings come back
    empty from libismrmrd, the ASCII ones this writer uses come back whole."""
    from gadget.mrd_output import MrdWriter

    with h5py.File(EXAMPLE, "r") as example:
        xml = example["dataset/xml"][0]
    image = ismrmrd.Image.from_array(np.ones((2, 2), dtype=np.float32))
    image.meta = {"DataRole": "Image"}
    theirs, ours = tmp_path / "python.h5", tmp_path / "ours.h5"
    with ismrmrd.Dataset(str(theirs), "dataset") as dataset:
        dataset.write_xml_header(xml)
        dataset.append_image("image_1", image)
    with h5py.File(ours, "w") as f:
        writer = MrdWriter(f.create_group("dataset"))
        writer.write_xml(xml)
        writer.append_image("image_1", image)
    assert read_with_cpp(cpp_reader, ours, "image_1").meta["image_1", 0] == {"DataRole": ["Image"]}
    assert read_with_cpp(cpp_reader, theirs, "image_1").meta.get(("image_1", 0), {}) == {}


def test_bundled_example_header_is_valid_for_libismrmrd(cpp_reader) -> None:
    view = read_with_cpp(cpp_reader, EXAMPLE)
    assert view.header["encoded"] == "384x192x1" and view.header["version"] == "-1"
    assert int(view.header["reserialized"]) > 0  # serialize() accepts it (it rejected version 2)
    assert len(view.acquisitions) == 67
