"""Output images: display-ready integer pixels on one scale per stream, roles and labels, the
meaning of the std series in its meta (calibration, prewhitening, region), K = 1 sends no std."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch
from gadget_helpers import SocketStream
from gadgetron.external import constants, readers, writers

from diffusion_core.reconstruct import Reconstruction
from gadget.assembly import AssembledSlice, SliceKey
from gadget.config import GadgetConfig
from gadget.datasets import open_read_only
from gadget.geometry import EncodingGeometry
from gadget.images import ImageMaker

N = 8
GEOMETRY = EncodingGeometry(
    (N, N, 1), (N, N, 1), (200.0, 200.0, 5.0), (200.0, 200.0, 5.0), 4, (0, N - 1)
)


def _slice(repetition: int = 0, noise: torch.Tensor | None = None) -> AssembledSlice:
    reference = ismrmrd.AcquisitionHeader()
    reference.idx.repetition = repetition
    return AssembledSlice(
        key=SliceKey(0, 0, 0, repetition, 0, 0),
        kspace=torch.zeros((2, N, N), dtype=torch.complex64),
        mask=torch.ones((N, N)),
        calibration=None,
        noise_covariance=noise,
        reference=reference,
    )


def _result(peak: float, seed: int = 0) -> Reconstruction:
    g = torch.Generator().manual_seed(seed)
    magnitude = torch.rand((N, N), generator=g) * peak
    magnitude[2, 3] = peak  # the maximum is known exactly
    phase = torch.rand((N, N), generator=g) * 6.0
    mean = torch.polar(magnitude, phase)
    std = torch.rand((N, N), generator=g) * peak / 10
    everywhere = torch.ones((N, N), dtype=torch.bool)
    return Reconstruction(
        mean, std, mean[None], torch.ones((1, N, N), dtype=torch.complex64), 1.0, 0.01, everywhere
    )


def _stored(values: torch.Tensor, factor: float, top: int) -> np.ndarray:
    return np.clip(np.floor(values.numpy().astype(np.float64) * factor + 0.5), 0, top)


def _by_series(images: list[ismrmrd.Image]) -> dict[int, ismrmrd.Image]:
    return {i.image_series_index: i for i in images}


@pytest.mark.parametrize(("output_type", "dtype"), [("uint16", np.uint16), ("int16", np.int16)])
def test_integer_output_is_rounded_on_one_scale_per_stream(output_type: str, dtype: type) -> None:
    maker = ImageMaker(GEOMETRY, GadgetConfig(output_type=output_type))
    first, brighter = _result(peak=0.02, seed=0), _result(peak=0.06, seed=1)
    images = [_by_series(maker(_slice(r), res)) for r, res in enumerate((first, brighter))]
    factor = 0.5 * 4095 / 0.02  # the first slice's maximum maps to half of max_intensity
    for result, series in zip((first, brighter), images, strict=True):
        mean, std = series[1], series[2]
        assert mean.data.dtype == dtype and std.data.dtype == dtype
        assert mean.data_type == (
            ismrmrd.DATATYPE_USHORT if dtype is np.uint16 else ismrmrd.DATATYPE_SHORT
        )
        np.testing.assert_array_equal(mean.data[0, 0], _stored(result.mean.abs(), factor, 4095))
        np.testing.assert_array_equal(std.data[0, 0], _stored(result.std, factor, 4095))
        assert (
            float(mean.meta["GADGETRON_ScaleRatio"])
            == float(std.meta["GADGETRON_ScaleRatio"])
            == pytest.approx(factor, rel=1e-6)
        )
    assert images[0][1].data.max() in (2047, 2048)  # 2047.5 from a float32 maximum
    assert images[1][1].data.max() == 4095  # three times brighter: clamped, scale kept
    assert images[0][1].meta["GADGETRON_ScaleRatio"] == images[1][1].meta["GADGETRON_ScaleRatio"]


def test_integer_windows_are_integers_in_stored_units() -> None:
    result = _result(peak=0.02)
    series = _by_series(ImageMaker(GEOMETRY, GadgetConfig(output_type="uint16"))(_slice(), result))
    factor = float(series[1].meta["GADGETRON_ScaleRatio"])
    for image, values in ((series[1], result.mean.abs()), (series[2], result.std)):
        width = int(image.meta["WindowWidth"])  # raises for a decimal string
        center = int(image.meta["WindowCenter"])
        assert width == round(float(torch.quantile(values.flatten(), 0.99)) * factor)
        assert center == (width + 1) // 2
        assert image.meta["GADGETRON_WindowWidth"] == str(width)


def test_float_output_keeps_data_units() -> None:
    result = _result(peak=0.02)
    series = _by_series(ImageMaker(GEOMETRY, GadgetConfig())(_slice(), result))
    assert series[1].data.dtype == np.float32
    np.testing.assert_array_equal(series[1].data[0, 0], result.mean.abs().numpy())
    np.testing.assert_array_equal(series[2].data[0, 0], result.std.numpy())
    assert series[1].meta["GADGETRON_ScaleRatio"] == "1"
    width = float(torch.quantile(result.mean.abs().flatten(), 0.99))
    assert float(series[1].meta["WindowWidth"]) == pytest.approx(width, rel=1e-5)


def test_complex_series_stays_complex_in_data_units_with_integer_output() -> None:
    result = _result(peak=0.02)
    series = _by_series(
        ImageMaker(GEOMETRY, GadgetConfig(output_type="int16", send_complex=True))(_slice(), result)
    )
    assert series[3].data.dtype == np.complex64 and series[3].image_type == ismrmrd.IMTYPE_COMPLEX
    np.testing.assert_array_equal(series[3].data[0, 0], result.mean.numpy())
    assert series[3].meta["GADGETRON_ScaleRatio"] == "1" and series[1].data.dtype == np.int16


def test_roles_and_labels_say_what_each_series_is() -> None:
    series = _by_series(
        ImageMaker(GEOMETRY, GadgetConfig(send_complex=True))(_slice(), _result(0.02))
    )
    mean, std, cplx = series[1], series[2], series[3]
    assert [i.meta["GADGETRON_DataRole"] for i in (mean, std, cplx)] == [
        "Image",
        "STD_MAP",
        "Image",
    ]
    assert {i.meta["DataRole"] for i in (mean, std, cplx)} == {"Image"}
    assert [i.meta["SequenceDescriptionAdditional"] for i in (mean, std, cplx)] == [
        "AI_RECON",
        "AI_RECON_SD",
        "AI_RECON_CPLX",
    ]
    assert std.meta["GADGETRON_SeqDescription"] == "AI_RECON_SD"
    assert std.meta["ImageComment"].startswith("uncertainty (posterior SD) of AI_RECON, 4 samples")
    assert "mean +/- 2 SD = nominal 95% interval, uncalibrated" in std.meta["ImageComment"]
    assert mean.meta["ImageComment"].startswith(
        "AI recon: posterior mean of 4 samples, dds, 25 NFE"
    )
    for image in (mean, std, cplx):
        text = " ".join(str(v) for v in image.meta.values())
        assert "DIFFUSION" not in text.upper() and text.isascii()


def test_uncalibrated_std_meta_and_prewhitening() -> None:
    maker = ImageMaker(GEOMETRY, GadgetConfig())
    plain = _by_series(maker(_slice(0), _result(0.02)))
    whitened = _by_series(
        maker(_slice(1, noise=torch.eye(2, dtype=torch.complex64)), _result(0.02))
    )
    std = plain[2].meta
    assert (
        std["UncertaintyCalibrated"],
        std["UncertaintyCalibrationFactor"],
        std["UncertaintyCalibrationData"],
    ) == ("false", "1", "none")
    assert std["UncertaintyRegion"] == "all pixels"
    assert std["UncertaintyInterval"] == "mean +/- 2 SD is the nominal 95% interval"
    assert plain[1].meta["Prewhitened"] == std["Prewhitened"] == "false"
    assert whitened[1].meta["Prewhitened"] == whitened[2].meta["Prewhitened"] == "true"
    assert "not prewhitened" in plain[2].meta["ImageComment"]
    assert ", prewhitened" in whitened[2].meta["ImageComment"]
    assert "UncertaintyCalibrated" not in plain[1].meta  # only the std series carries them


def test_calibration_and_support_come_from_the_reconstruction() -> None:
    base = _result(0.02)
    support = torch.zeros((N, N), dtype=torch.bool)
    support[2:5, 1:5] = True
    result = dataclasses.replace(
        base,
        support=support,
        calibrated=True,
        calibration_factor=1.7,
        calibration_data="leave-one-subject-out, 3 held-out subjects",
        calibration_note="nearest setting: dds 25 NFE K=4 CG 5 R~4 (asked R~8)",
        residual_ratio=2.4321,
    )
    std = _by_series(ImageMaker(GEOMETRY, GadgetConfig())(_slice(), result))[2].meta
    assert std["UncertaintyDataMisfit"] == "2.432"
    assert std["UncertaintyCalibrated"] == "true"
    assert std["UncertaintyCalibrationFactor"] == "1.7"
    assert std["UncertaintyCalibrationData"] == "leave-one-subject-out, 3 held-out subjects"
    assert std["UncertaintyRegion"] == "object support 12 of 64 pixels"
    assert (
        std["UncertaintyCalibrationNote"] == "nearest setting: dds 25 NFE K=4 CG 5 R~4 (asked R~8)"
    )
    assert std["PrewhiteningNote"] == "not prewhitened: no noise covariance"
    everywhere = _by_series(ImageMaker(GEOMETRY, GadgetConfig())(_slice(), base))[2].meta
    assert everywhere["UncertaintyRegion"] == "all pixels"
    assert everywhere["UncertaintyCalibrationNote"] == "uncalibrated"
    assert (
        "calibrated x1.7 on leave-one-subject-out, 3 held-out subjects, object region only"
        in std["ImageComment"]
    )


def test_one_sample_sends_no_std_series_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gadget.images"):
        maker = ImageMaker(GEOMETRY, GadgetConfig(num_samples=1))
    images = maker(_slice(), _result(0.02))
    assert [i.image_series_index for i in images] == [1]
    assert "num_samples is 1: no std series is sent" in caplog.text
    # with linear_width, the std series of a result that has one, and what it measures
    maker = ImageMaker(GEOMETRY, GadgetConfig(num_samples=1, linear_width=True))
    one = dataclasses.replace(_result(0.02), std_kind="linear")
    std = _by_series(maker(_slice(), one))[2].meta
    assert std["UncertaintyMeasure"].startswith("linear-Gaussian posterior standard deviation")
    with caplog.at_level(logging.INFO, logger="gadget.images"):
        images = maker(_slice(), dataclasses.replace(one, has_std=False, calibration_note="why"))
    assert [i.image_series_index for i in images] == [1] and "no std series: why" in caplog.text


def test_integer_images_survive_gadgetrons_socket_and_an_ismrmrd_file(tmp_path: Path) -> None:
    sent = ImageMaker(GEOMETRY, GadgetConfig(output_type="uint16"))(_slice(), _result(0.02))
    left, right = socket.socketpair()
    with left, right:
        for image in sent:
            writers.write_image(SocketStream(left), image)
        stream = SocketStream(right)
        received = []
        for _ in sent:
            assert (
                readers.read(stream, constants.GadgetMessageIdentifier)
                == constants.GADGET_MESSAGE_ISMRMRD_IMAGE
            )
            received.append(readers.read_image(stream))
    path = str(tmp_path / "out.h5")
    dataset = ismrmrd.Dataset(path, "dataset", create_if_needed=True)  # no context manager in 1.14
    for image in sent:
        dataset.append_image(f"image_{image.image_series_index}", image)
    dataset.close()
    with open_read_only(Path(path), "dataset") as dataset:
        stored = [dataset.read_image(f"image_{i.image_series_index}", 0) for i in sent]
    for original, over_socket, from_file in zip(sent, received, stored, strict=True):
        for copy in (over_socket, from_file):
            assert copy.data.dtype == np.uint16
            np.testing.assert_array_equal(copy.data, original.data)
            assert copy.meta["GADGETRON_ScaleRatio"] == original.meta["GADGETRON_ScaleRatio"]
            assert copy.meta["WindowWidth"] == original.meta["WindowWidth"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_replay_writes_uint16_series_on_one_scale(
    accelerated_file, fast_properties, tmp_path
) -> None:
    from gadget.cli import main

    out, png = tmp_path / "out.h5", tmp_path / "png"
    options = [
        "--sampler", "dds", "--nfe", fast_properties["nfe"], "--samples", "2", "--cg-iters", "2",
        "--checkpoint", fast_properties["checkpoint"], "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    args = ["replay", str(accelerated_file), str(out), "--png", str(png), "--output-type", "uint16"]
    assert main([*args, *options]) == 0
    with open_read_only(out, "dataset") as dataset:
        images = [dataset.read_image(f"image_{s}", i) for s in (1, 2) for i in range(2)]
    assert all(i.data.dtype == np.uint16 and i.data_type == ismrmrd.DATATYPE_USHORT for i in images)
    assert len({i.meta["GADGETRON_ScaleRatio"] for i in images}) == 1  # both slices, mean and std
    assert images[0].data.max() in (2047, 2048)  # the first slice's maximum: max_intensity / 2
    assert [i.meta["GADGETRON_DataRole"] for i in images] == [
        "Image",
        "Image",
        "STD_MAP",
        "STD_MAP",
    ]
    assert all(int(i.meta["WindowWidth"]) > 0 for i in images)
    assert sorted(p.name for p in png.iterdir())[:2] == ["mean_s1_001.png", "mean_s1_002.png"]
    assert len(list(png.glob("std_s2_*.png"))) == 2


def test_every_series_says_the_cg_iterations_and_how_they_were_chosen() -> None:
    maker = ImageMaker(GEOMETRY, GadgetConfig(send_complex=True))
    unrecorded = _by_series(maker(_slice(), _result(0.02)))
    assert all("DataConsistencyCGIterations" not in unrecorded[s].meta for s in (1, 2, 3))
    fixed = _by_series(maker(_slice(), dataclasses.replace(_result(0.02), cg_iters=5)))
    assert [fixed[s].meta["DataConsistencyCGIterations"] for s in (1, 2, 3)] == ["5"] * 3
    assert all("DataConsistencyCGSelection" not in fixed[s].meta for s in (1, 2, 3))
    note = (
        "chosen by held-back k-space misfit (reduced chi-square 5: 1.312, 10: 1.062); cg_iters 10"
    )
    chosen = dataclasses.replace(_result(0.02), cg_iters=10, cg_note=note)
    meta = _by_series(ImageMaker(GEOMETRY, GadgetConfig())(_slice(), chosen))
    for series in (1, 2):
        assert meta[series].meta["DataConsistencyCGIterations"] == "10"
        assert meta[series].meta["DataConsistencyCGSelection"] == note


def test_every_series_says_how_many_coil_map_sets_were_used() -> None:
    maker = ImageMaker(GEOMETRY, GadgetConfig(send_complex=True))
    one = _by_series(maker(_slice(), _result(0.02)))
    assert [one[s].meta["CoilMapSets"] for s in (1, 2, 3)] == ["1"] * 3
    assert all("CoilMapSetsNote" not in one[s].meta for s in (1, 2, 3))
    note = "two ESPIRiT map sets (soft SENSE): the second covers 23.7% of the object's pixels"
    two = dataclasses.replace(_result(0.02), map_sets=2, map_note=note)
    meta = _by_series(maker(_slice(), two))
    assert [meta[s].meta["CoilMapSets"] for s in (1, 2, 3)] == ["2"] * 3
    assert all(meta[s].meta["CoilMapSetsNote"] == note for s in (1, 2, 3))
