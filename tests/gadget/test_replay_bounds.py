"""Bad ISMRMRD files (good ones mutated) are refused by replay within a second, exit 2, with a
message naming the item and what was expected, no traceback, and no output file."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from fake_recon import ZeroFilledRss
from gadget_helpers import acquisitions_of, shepp_logan

from gadget.cli import main
from gadget.config import GadgetConfig
from gadget.replay import ReplayError, replay


def _copy(source: Path, path: Path) -> Path:
    path.write_bytes(source.read_bytes())
    return path


def _xml(edit: Callable[[str], str]) -> Callable[[Path, Path], Path]:
    def make(source: Path, path: Path) -> Path:
        _copy(source, path)
        with h5py.File(path, "r+") as f:
            text = f["dataset/xml"][0].decode()
            f["dataset/xml"][0] = edit(text).encode()
        return path

    return make


def _space(name: str, x: str, y: str) -> Callable[[str], str]:
    """Replace the matrix size of encodedSpace or reconSpace."""

    def edit(text: str) -> str:
        start = text.index(f"<{name}>")
        stop = text.index(f"</{name}>")
        part = text[start:stop]
        head, rest = part.split("<matrixSize>", 1)
        _, tail = rest.split("</matrixSize>", 1)
        matrix = f"<matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>"
        return text[:start] + head + matrix + tail + text[stop:]

    return edit


def _head(index: int, field: str, value: float) -> Callable[[Path, Path], Path]:
    def make(source: Path, path: Path) -> Path:
        _copy(source, path)
        with h5py.File(path, "r+") as f:
            data = f["dataset/data"]
            row = data[index]
            row["head"][field] = value
            data[index] = row
        return path

    return make


def _xml_node(kind: str) -> Callable[[Path, Path], Path]:
    def make(source: Path, path: Path) -> Path:
        _copy(source, path)
        with h5py.File(path, "r+") as f:
            del f["dataset/xml"]
            if kind == "group":
                f["dataset"].create_group("xml")
            else:
                f["dataset"].create_dataset("xml", shape=(0,), dtype=h5py.string_dtype("ascii"))
        return path

    return make


CASES = {
    "65535-lines": (_xml(_space("encodedSpace", "64", "65535")), r"encodedSpace\.matrixSize\.y = 65535: expected an integer from 1 to 4096"),
    "recon-32x65535": (_xml(_space("reconSpace", "32", "65535")), r"reconSpace\.matrixSize\.y = 65535: expected an integer"),
    "4096-squared": (_xml(lambda t: _space("reconSpace", "4096", "4096")(_space("encodedSpace", "4096", "4096")(t))), r"4096 x 4096 reconstruction grid .* at most 1048576"),
    "2000-lines-for-32-measured": (_xml(_space("encodedSpace", "64", "2000")), r"2000 phase-encode lines, but only 32 distinct lines are measured; expected at least 63"),
    "non-integer-matrix": (_xml(_space("reconSpace", "32.5", "32")), r"reconSpace\.matrixSize\.x = '32\.5': expected an integer"),
    "1e30-matrix": (_xml(_space("encodedSpace", "1e30", "32")), r"encodedSpace\.matrixSize\.x = '1e30': expected an integer"),
    "nan-fov": (_xml(lambda t: t.replace("<fieldOfView_mm>\n\t\t\t\t<x>", "<fieldOfView_mm>\n\t\t\t\t<x>nan", 1).replace("<fieldOfView_mm><x>", "<fieldOfView_mm><x>nan", 1)), r"fieldOfView_mm\.x"),
    "not-an-ismrmrd-header": (_xml(lambda t: "<measurement><x>1</x></measurement>"), r"root element <measurement>, expected <ismrmrdHeader>"),
    "header-missing-required": (_xml(lambda t: "<ismrmrdHeader xmlns='http://www.ismrm.org/ISMRMRD'/>"), r"required element\(s\) missing: \['experimentalConditions'\]"),
    "header-not-xml": (_xml(lambda t: t[: len(t) // 2]), r"/dataset/xml is not well-formed XML"),
    "xml-0-entries": (_xml_node("empty"), r"/dataset/xml: shape \(0,\).*expected one string"),
    "xml-is-a-group": (_xml_node("group"), r"/dataset/xml is an HDF5 group; expected a dataset of one string"),
    "65535-channels": (_head(3, "active_channels", 65535), r"acquisition 3 \(scan_counter 0, line \d+, slice 0, repetition 0\): 65535 channels, expected 1 to 256"),
    "0-channels": (_head(3, "active_channels", 0), r"acquisition 3 .*: 0 channels, expected 1 to 256"),
    "65535-samples": (_head(4, "number_of_samples", 65535), r"acquisition 4 .*: 65535 samples, expected 1 to 4096"),
    "nan-dwell-time": (_head(2, "sample_time_us", np.nan), r"acquisition 2 .*: sample_time_us nan, expected a finite dwell time"),
}  # fmt: skip


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_is_a_clear_error_within_a_second(
    case, accelerated_file, tmp_path, capsys
) -> None:
    make, message = CASES[case]
    source = make(accelerated_file, tmp_path / "bad.h5")
    out = tmp_path / "out.h5"
    started = time.perf_counter()
    with pytest.raises(ReplayError, match=message):
        replay(
            source, out, GadgetConfig(device="cpu"), progress=False, reconstructor=ZeroFilledRss()
        )
    assert time.perf_counter() - started < 1.0
    assert not out.exists() and list(tmp_path.iterdir()) == [source]
    assert main(["replay", str(source), str(out), "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(source) in err
    assert not out.exists()


@pytest.mark.timeout(60)
def test_header_that_passes_but_places_lines_badly_fails_its_slice_and_keeps_its_lines(
    accelerated_file, tmp_path
) -> None:
    """A centre line far from the data: every line falls outside the grid; the slices fail with
    their counters, their raw lines are kept in the output."""
    edit = _xml(lambda t: t.replace("<center>16</center>", "<center>0</center>", 1))
    source = edit(accelerated_file, tmp_path / "shifted.h5")
    out = tmp_path / "out.h5"
    result = replay(
        source, out, GadgetConfig(device="cpu"), progress=False, reconstructor=ZeroFilledRss()
    )
    assert result.run.slices_done == 0 and len(result.run.failed) == 2
    assert (
        "repetition=1" in result.run.failed[1]
        and "outside the encoded grid" in result.run.failed[1]
    )
    with h5py.File(out, "r") as f, h5py.File(source, "r") as g:
        noise = int((g["dataset/data"]["head"]["flags"] & (1 << 18) > 0).sum())
        assert f["dataset/data"].shape[0] == g["dataset/data"].shape[0] - noise


@pytest.mark.timeout(60)
def test_acquisition_whose_samples_do_not_match_its_header_is_skipped_and_named(
    accelerated_file, tmp_path
) -> None:
    source = _head(6, "active_channels", 8)(accelerated_file, tmp_path / "bad.h5")
    out = tmp_path / "out.h5"
    result = replay(
        source, out, GadgetConfig(device="cpu"), progress=False, reconstructor=ZeroFilledRss()
    )
    (skipped,) = result.unreadable
    assert re.search(
        r"acquisition 6 \(scan_counter 0, line \d+, slice 0, repetition 0\): its header says 8 channels x 64 samples .* the file holds 512",
        skipped,
    )
    assert result.run.slices_done == 2 and not result.ok


@pytest.mark.timeout(60)
def test_samples_too_large_for_float32_fail_their_slice_by_name(accelerated_file, tmp_path) -> None:
    source = _copy(accelerated_file, tmp_path / "huge.h5")
    with h5py.File(source, "r+") as f:
        data = f["dataset/data"]
        row = data[10]
        row["data"][:] = 1e30
        data[10] = row
        line = int(row["head"]["idx"]["kspace_encode_step_1"])
    out = tmp_path / "out.h5"
    result = replay(
        source, out, GadgetConfig(device="cpu"), progress=False, reconstructor=ZeroFilledRss()
    )
    (failure,) = result.run.failed
    assert "repetition=0" in failure
    assert (
        f"line {line} (scan_counter 0) has samples of magnitude 1.41e+30; expected at most 1e+15"
        in failure
    )
    assert result.run.slices_done == 1 and result.passed_through > 0


@pytest.mark.timeout(60)
def _zero_filled_replay(source: Path, tmp_path: Path) -> tuple[np.ndarray, list[int]]:
    """Replay ``source`` with the zero-filled reconstructor (2 slices expected): the first image
    series and the encoding_space_ref of the raw acquisitions the output kept in /data."""
    out = tmp_path / f"out_{source.stem}.h5"
    result = replay(
        source, out, GadgetConfig(device="cpu"), progress=False, reconstructor=ZeroFilledRss()
    )
    assert result.run.ok and result.run.slices_done == 2
    with h5py.File(out) as f:
        kept = f["dataset/data"]["head"]["encoding_space_ref"] if "data" in f["dataset"] else []
        return f["dataset/image_1/data"][:], [int(k) for k in kept]


def test_cartesian_file_with_stored_coordinates_gives_the_same_images(
    accelerated_file, tmp_path
) -> None:
    """ismrmrd-tools' ``-k`` adds each line's k-space coordinates to a Cartesian file; those
    lines were once passed on as non-Cartesian and the file gave no image."""
    with_coordinates = shepp_logan(tmp_path / "k.h5", acceleration=2, noise=0.02, coordinates=True)
    with h5py.File(with_coordinates) as f:
        assert (f["dataset/data"]["head"]["trajectory_dimensions"][1:] == 2).all()  # [0]: noise
    images = [_zero_filled_replay(s, tmp_path)[0] for s in (accelerated_file, with_coordinates)]
    assert images[0].shape == images[1].shape
    np.testing.assert_allclose(images[1], images[0], rtol=1e-5, atol=1e-6 * np.abs(images[0]).max())


def test_lines_of_a_second_encoding_space_are_kept_not_mixed_into_slices(
    accelerated_file, tmp_path
) -> None:
    """A header with two <encoding>s: lines with encoding_space_ref 1 (another matrix) were once
    placed on encoding 0's grid and came out as a third, garbage image set with encoding 0's
    indices. They are now passed on unchanged (replay keeps them in /data)."""
    xml, acquisitions = acquisitions_of(accelerated_file)
    header = ismrmrd.xsd.CreateFromDocument(xml)
    second = copy.deepcopy(header.encoding[0])
    second.encodedSpace.matrixSize.x, second.encodedSpace.matrixSize.y = 48, 24
    second.reconSpace.matrixSize.x, second.reconSpace.matrixSize.y = 24, 24
    header.encoding.append(second)
    mixed = tmp_path / "two_encodings.h5"
    dataset = ismrmrd.Dataset(str(mixed), "dataset", create_if_needed=True)
    dataset.write_xml_header(header.toXML("utf-8"))
    for acquisition in acquisitions:
        dataset.append_acquisition(acquisition)
    rng = np.random.default_rng(0)
    for ky in range(24):
        data = rng.standard_normal((4, 48)) + 1j * rng.standard_normal((4, 48))
        line = ismrmrd.Acquisition.from_array(data.astype(np.complex64))
        line.encoding_space_ref, line.center_sample = 1, 24
        line.idx.kspace_encode_step_1 = ky
        if ky == 23:
            line.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
        dataset.append_acquisition(line)
    dataset.close()
    plain, kept_plain = _zero_filled_replay(accelerated_file, tmp_path)
    with_second, kept = _zero_filled_replay(mixed, tmp_path)
    assert kept_plain == [] and kept == [1] * 24
    np.testing.assert_array_equal(with_second, plain)
