"""Offline replay of ismrmrd-tools files through the gadget's handler, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
from gadget_helpers import MATRIX, acquisitions_of

from gadget.cli import main
from gadget.config import GadgetConfig
from gadget.replay import ReplayError, replay


def _cli_options(properties: dict[str, str]) -> list[str]:
    return [
        "--sampler", properties["sampler"], "--nfe", properties["nfe"], "--samples", properties["num_samples"],
        "--cg-iters", properties["cg_iters"], "--checkpoint", properties["checkpoint"], "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip


def _images(path: Path, series: int) -> list[ismrmrd.Image]:
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r") as dataset:
        group = f"image_{series}"
        return [dataset.read_image(group, i) for i in range(dataset.number_of_images(group))]


@pytest.mark.timeout(120)
def test_replay_writes_images_with_full_headers(
    accelerated_file, fast_properties, tmp_path
) -> None:
    out, png = tmp_path / "out.h5", tmp_path / "png"
    code = main(
        [
            "replay",
            str(accelerated_file),
            str(out),
            "--png",
            str(png),
            "--complex",
            *_cli_options(fast_properties),
        ]
    )
    assert code == 0
    means, stds, complexes = _images(out, 1), _images(out, 2), _images(out, 3)
    assert len(means) == len(stds) == len(complexes) == 2  # two repetitions
    xml, _ = acquisitions_of(accelerated_file)
    header = ismrmrd.xsd.CreateFromDocument(xml)
    fov = header.encoding[0].reconSpace.fieldOfView_mm
    for rep, (mean, std, cplx) in enumerate(zip(means, stds, complexes, strict=True)):
        assert mean.matrix_size == (MATRIX, MATRIX, 1)
        assert tuple(mean.field_of_view) == pytest.approx((fov.x, fov.y, fov.z))
        assert (mean.repetition, mean.image_index, mean.image_series_index) == (rep, rep + 1, 1)
        assert (std.image_index, std.image_series_index, cplx.image_series_index) == (rep + 1, 2, 3)
        assert (
            mean.image_type == ismrmrd.IMTYPE_MAGNITUDE
            and cplx.image_type == ismrmrd.IMTYPE_COMPLEX
        )
        assert mean.data.dtype == np.float32 and cplx.data.dtype == np.complex64
        assert (
            mean.meta["GADGETRON_DataRole"] == "Image"
            and std.meta["GADGETRON_DataRole"] == "STD_MAP"
        )
        assert float(mean.meta["WindowWidth"]) > 0
        assert np.isfinite(mean.data).all() and mean.data.max() > 0 and (std.data >= 0).all()
        np.testing.assert_allclose(np.abs(cplx.data), mean.data, rtol=1e-5, atol=1e-6)
    with h5py.File(out, "r") as f:
        assert f["dataset/xml"][0] == xml
    assert sorted(p.name for p in png.iterdir())[:2] == ["complex_s3_001.png", "complex_s3_002.png"]
    assert len(list(png.iterdir())) == 6


@pytest.mark.timeout(120)
def test_replay_refuses_to_overwrite_unless_told(
    accelerated_file, fast_properties, tmp_path, capsys
) -> None:
    out = tmp_path / "out.h5"
    assert main(["replay", str(accelerated_file), str(out), *_cli_options(fast_properties)]) == 0
    assert main(["replay", str(accelerated_file), str(out), *_cli_options(fast_properties)]) == 2
    assert "group /dataset exists; pass --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "replay",
                str(accelerated_file),
                str(out),
                "--overwrite",
                *_cli_options(fast_properties),
            ]
        )
        == 0
    )
    assert len(_images(out, 1)) == 2  # replaced, not appended
    assert (
        main(
            [
                "replay",
                str(accelerated_file),
                str(out),
                "--out-group",
                "second",
                *_cli_options(fast_properties),
            ]
        )
        == 0
    )


def _truncated(source: Path, tmp_path: Path) -> Path:
    data = source.read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_limits(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "nolimits.h5"
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "r+") as f:
        xml = f["dataset/xml"][0].decode()
        start, stop = xml.index("<kspace_encoding_step_1>"), xml.index("</kspace_encoding_step_1>")
        f["dataset/xml"][0] = (
            xml[:start] + xml[stop + len("</kspace_encoding_step_1>") :]
        ).encode()
    return path


def _not_hdf5(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "text.h5"
    path.write_text("not HDF5")
    return path


def _not_ismrmrd(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["dataset/values"] = np.arange(3)
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated, "cannot be read|not an HDF5 file"),
        (_not_hdf5, "not an HDF5 file"),
        (_not_ismrmrd, r"not an ISMRMRD dataset \(missing \['xml', 'data'\]\)"),
        (_no_limits, "kspace_encoding_step_1"),
    ],
    ids=["truncated", "not-hdf5", "not-ismrmrd", "no-encoding-limits"],
)
def test_bad_input_files_are_clear_errors(
    make, message, full_file, fast_properties, tmp_path, capsys
) -> None:
    source = make(full_file, tmp_path)
    code = main(["replay", str(source), str(tmp_path / "out.h5"), *_cli_options(fast_properties)])
    assert code == 2
    assert capsys.readouterr().err.strip()
    with pytest.raises((ReplayError, ValueError), match=message):
        replay(
            source,
            tmp_path / "out2.h5",
            GadgetConfig.from_properties(fast_properties),
            progress=False,
        )


@pytest.mark.timeout(120)
def test_nan_samples_fail_that_slice_only(accelerated_file, fast_properties, tmp_path) -> None:
    source = tmp_path / "nan.h5"
    source.write_bytes(accelerated_file.read_bytes())
    with ismrmrd.Dataset(str(source), "dataset", create_if_needed=False) as dataset:
        acq = dataset.read_acquisition(5)  # a line of repetition 0
        acq.data[:] = np.nan
        dataset.write_acquisition(acq, 5)
    result = replay(
        source, tmp_path / "out.h5", GadgetConfig.from_properties(fast_properties), progress=False
    )
    assert result.run.slices_done == 1 and len(result.run.failed) == 1
    assert "repetition=0" in result.run.failed[0] and "non-finite" in result.run.failed[0]
    assert len(_images(tmp_path / "out.h5", 1)) == 1
    # nothing is lost: the failed slice's lines go downstream unchanged
    with ismrmrd.Dataset(str(source), "dataset", create_if_needed=False, mode="r") as dataset:
        lines = [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]
    failed_slice = [
        a
        for a in lines
        if a.idx.repetition == 0 and not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    ]
    assert result.passed_through == len(failed_slice) > 0


@pytest.mark.timeout(120)
def test_console_module_runs(accelerated_file, fast_properties, tmp_path) -> None:
    out = tmp_path / "out.h5"
    run = subprocess.run(
        [sys.executable, "-m", "gadget.cli", "replay", str(accelerated_file), str(out), *_cli_options(fast_properties)],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "45 acquisitions -> 2 image sets (slice 0; repetition 0, 1), 4 images" in run.stdout


@pytest.mark.timeout(120)
def test_coil_compression_property(accelerated_file, fast_properties, tmp_path) -> None:
    config = GadgetConfig.from_properties({**fast_properties, "coil_compression": "2"})
    result = replay(accelerated_file, tmp_path / "out.h5", config, progress=False)
    assert result.run.ok and result.run.images_sent == 4


@pytest.mark.timeout(120)
def test_bf16_option_runs_the_network_in_bfloat16(
    accelerated_file, fast_properties, tmp_path
) -> None:
    """``--bf16`` (the gadget property ``bf16``) reaches the network: same seed, an image that is
    close to the float32 one but not bit-identical."""
    plain, low = tmp_path / "fp32.h5", tmp_path / "bf16.h5"
    replay(accelerated_file, plain, GadgetConfig.from_properties(fast_properties), progress=False)
    assert (
        main(["replay", str(accelerated_file), str(low), "--bf16", *_cli_options(fast_properties)])
        == 0
    )
    for a, b in zip(_images(plain, 1), _images(low, 1), strict=True):
        rel = np.linalg.norm(a.data - b.data) / np.linalg.norm(a.data)
        assert 0 < rel < 0.05, rel


def test_train_subcommand_hands_over_to_the_training_cli(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "python -m diffusion_core.training" in usage and "--data" in usage
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--steps", "3"])  # --data and --out are required by the training CLI
    assert exit_info.value.code == 2
    assert "--data" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_one_sample_with_linear_width_sends_a_labelled_std(
    accelerated_file, fast_properties, tmp_path
) -> None:
    """--samples 1 alone sends no std series; with --linear-width it sends the linear-Gaussian
    width, said in the meta, labelled uncalibrated when the prior's card has no K = 1 entry (the
    small test prior has none), positive on the object and zero nowhere it is reconstructed."""
    options = {**fast_properties, "num_samples": "1"}
    plain, wide = tmp_path / "plain.h5", tmp_path / "wide.h5"
    assert main(["replay", str(accelerated_file), str(plain), *_cli_options(options)]) == 0
    with h5py.File(plain, "r") as f:
        assert "image_1" in f["dataset"] and "image_2" not in f["dataset"]
    code = main(
        ["replay", str(accelerated_file), str(wide), "--linear-width", *_cli_options(options)]
    )
    assert code == 0
    means, stds = _images(wide, 1), _images(wide, 2)
    assert len(means) == len(stds) == 2
    for mean, std in zip(means, stds, strict=True):
        assert std.meta["UncertaintyMeasure"].startswith("linear-Gaussian posterior")
        assert std.meta["UncertaintyCalibrated"] == "false"
        assert std.meta["UncertaintyCalibrationNote"].startswith("uncalibrated")
        assert std.data.dtype == np.float32 and float(std.data.min()) >= 0
        bright = mean.data > 0.5 * mean.data.max()
        assert float(std.data[bright].min()) > 0
    for a, b in zip(_images(plain, 1), means, strict=True):
        np.testing.assert_array_equal(a.data, b.data)  # the width leaves the mean as it was
