"""``gadgetron-diffusion calibrate``: fit a prior's std calibration on the user's fully sampled data.

Reads slices as the training command does (:mod:`diffusion_core.training.data`: NIfTI / MGZ
volumes, ISMRMRD or fastMRI HDF5), turns each into a measurement with simulated coils, noise and
each named mask (:mod:`diffusion_core.calibration_cases`), reconstructs it at the named setting,
and fits a noise weight and a factor per setting (sampler, NFE, K, CG iterations, acceleration
class, 1D or 2D sampling) (:mod:`diffusion_core.uncertainty`). For line masks the CG iterations
are chosen per case as the replay chooses them (``--cg-iters-inside`` where the object lies inside
the FOV, ``--cg-iters-cut`` where the FOV cuts it, ``--cg-iters`` otherwise; the replay's defaults),
and each setting a case got is fitted on the cases that got it. Prints the object-pixel coverage of
mean +- 2 std per case before calibration and after it, the "after" model fitted without the
case's subject (without the case itself when there is one subject),
and writes the fit on all cases into the model card at ``--out`` (a copy of card and weights;
``--in-place`` writes into the prior's own card).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("gadget.calibrate")


@contextlib.contextmanager
def _level(name: str, level: int) -> Iterator[None]:
    """Logger ``name`` at ``level`` inside the block, as it was after it."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


class CalibrationDataError(ValueError):
    """Calibration data that cannot be used (no files, no usable slices, unreadable files)."""


@dataclass(frozen=True)
class CalibrateConfig:
    """What ``calibrate`` does; validated once, from the command line."""

    data: tuple[Path, ...]
    checkpoint: str
    out: Path | None
    in_place: bool
    masks: tuple[str, ...]
    sampler: str
    nfe: int
    num_samples: int
    cg_iters: int
    # the replay's FOV rule for line masks (0: off, --cg-iters for every case)
    cg_iters_inside: int
    cg_iters_cut: int
    crop: int
    slices_per_subject: int
    coils: int
    noise: float
    seed: int
    device: str
    progress: bool
    # the conformal risk-control bound where there are >= 19 cases (False: the factor makes the
    # mean case coverage 0.95, as with fewer cases)
    guarantee: bool = True
    # K = 1: fit the linear-Gaussian width (ReconConfig.linear_width) instead of a samples' std
    linear_width: bool = False

    def __post_init__(self) -> None:
        from diffusion_core.calibration_cases import MaskSpec

        for m in self.masks:
            MaskSpec.parse(m)
        if self.num_samples < 2 and not (self.num_samples == 1 and self.linear_width):
            raise ValueError(
                f"--samples: a std needs K >= 2 samples (or --samples 1 --linear-width for the "
                f"linear-Gaussian width), got {self.num_samples}"
            )
        if self.linear_width and self.num_samples != 1:
            raise ValueError(
                f"--linear-width: the width of one sample; expected --samples 1, got "
                f"{self.num_samples}"
            )
        if (self.out is None) == (not self.in_place):
            raise ValueError("--out CARD_OR_STEM or --in-place: expected exactly one")
        for name, value, low in (
            ("--crop", self.crop, 32),
            ("--slices-per-subject", self.slices_per_subject, 1),
            ("--coils", self.coils, 1),
            ("--cg-iters", self.cg_iters, 1),
            ("--cg-iters-inside", self.cg_iters_inside, 0),
            ("--cg-iters-cut", self.cg_iters_cut, 0),
        ):
            if value < low:
                raise ValueError(f"{name}: expected >= {low}, got {value}")
        if not self.noise >= 0:
            raise ValueError(f"--noise: expected >= 0, got {self.noise}")


def _slices(config: CalibrateConfig) -> list[tuple[str, str, torch.Tensor]]:
    """(name, subject, image) for up to ``slices_per_subject`` central slices of each source."""
    from diffusion_core.training.data import DataConfig, find_sources, source_slices, subject_of
    from diffusion_core.training.kspace_files import center_crop

    try:
        files = find_sources(config.data)
    except FileNotFoundError as err:
        raise CalibrationDataError(str(err).replace("training data", "calibration data")) from err
    names = ", ".join(map(str, config.data))
    if not files:
        raise CalibrationDataError(
            f"calibration data {names}: no NIfTI/MGZ/HDF5 files found (expected fully sampled "
            "volumes or ISMRMRD / fastMRI k-space files)"
        )
    out = []
    for path in files:
        try:
            slices = source_slices(path, DataConfig(crop=config.crop))
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # h5py: RuntimeError too
            log.warning("calibration data %s: skipped, cannot be read (%s)", path, err)
            continue
        if not slices:
            log.warning("calibration data %s: skipped, no slice with enough object", path)
            continue
        picks = np.linspace(0.35, 0.65, config.slices_per_subject) * (len(slices) - 1)
        for i in sorted({round(p) for p in picks}):
            image = center_crop(slices[i], (config.crop, config.crop))
            out.append((f"{path.name} slice {i}", subject_of(path), image))
    if not out:
        raise CalibrationDataError(
            f"calibration data {names}: no usable cases in {len(files)} file(s) "
            "(each was unreadable or had no slice with enough object)"
        )
    return out


def run(config: CalibrateConfig) -> int:
    """Fit, print the table, write the card; return the exit status."""
    from tqdm import tqdm

    from diffusion_core.calibration_cases import MaskSpec, simulated_measurement
    from diffusion_core.checkpoint import load_checkpoint, read_card, write_calibration
    from diffusion_core.priors import prior_path
    from diffusion_core.reconstruct import ReconConfig, reconstruct
    from diffusion_core.uncertainty import (
        ALPHA,
        BIRGE,
        BIRGE_TOLERANCE,
        NOISE_WEIGHTS,
        CalibrationEntry,
        CaseScores,
        Setting,
        acceleration_class,
        calibration_block,
        case_scores,
        coverage,
        entries_from_card,
        fit_model,
        interval_multiplier,
        leave_one_out_model,
        mask_sampling,
        matrix_size,
        merged,
    )
    from gadget.recon import choose_device

    source = prior_path(config.checkpoint)
    device = choose_device(config.device)
    denoiser = load_checkpoint(source, device=device)
    slices = _slices(config)
    cfg = ReconConfig(
        sampler=config.sampler,
        nfe=config.nfe,
        num_samples=config.num_samples,
        cg_iters=config.cg_iters,
        cg_iters_inside=config.cg_iters_inside or None,
        cg_iters_cut=config.cg_iters_cut or None,
        linear_width=config.linear_width,
    )
    g = torch.Generator().manual_seed(config.seed)
    jobs = [(s, MaskSpec.parse(m)) for s in slices for m in config.masks]
    # per setting a card tells apart (the grid aside): its cases (name, subject, mask, scores)
    results: dict[Setting, list[tuple[str, str, str, CaseScores]]] = {}
    # per setting, the grid of every case; the entry records their median
    matrices: dict[Setting, list[int]] = {}
    for (name, subject, image), spec in tqdm(jobs, desc="calibrate", disable=not config.progress):
        kspace, truth = simulated_measurement(image, config.coils, config.noise, g)
        mask = spec.make(
            (kspace.shape[-2], kspace.shape[-1]), int(torch.randint(0, 2**31 - 1, (), generator=g))
        )
        # the raw std is what is fitted: its "uncalibrated" warning would come once a case
        with _level("diffusion_core.uncertainty", logging.ERROR):
            out = reconstruct(
                (kspace * mask).to(device),
                mask.to(device),
                denoiser,
                cfg,
                generator=torch.Generator(device).manual_seed(len(results)),
            )
        assert out.std_raw is not None
        # the noise the mean keeps from the sampled fraction f of k-space: f sigma^2
        noise_var = float(mask.mean()) * (out.noise_sigma * out.scale) ** 2
        scores = case_scores(
            truth,
            out.mean.cpu(),
            out.std_raw.cpu(),
            out.support.cpu(),
            noise_var,
            out.residual_ratio,  # the data misfit, for fits with a residual exponent
        )
        # one entry per setting: the FOV rule may give cases of one mask different CG settings,
        # and masks of one acceleration class and sampling (equispaced:2 and equispaced:3 with
        # their ACS lines) share an entry, fitted on the cases of both (two entries of one
        # setting in a card: reconstruct would use one of them only)
        setting = Setting(
            config.sampler,
            config.nfe,
            config.num_samples,
            out.cg_iters,
            acceleration_class(mask),
            mask_sampling(mask),
        )
        results.setdefault(setting, []).append((name, subject, spec.label(), scores))
        matrices.setdefault(setting, []).append(matrix_size(mask))
    fk = interval_multiplier(config.num_samples)
    # the shipped card's model: the width grows with the data misfit as the Birge ratio
    exponents, tolerance = (BIRGE,), BIRGE_TOLERANCE
    entries = []
    print(
        "| case | mask | coverage raw 2 std | coverage calibrated (held out) "
        "| noise_weight, factor |"
    )
    print("|---|---|---|---|---|")
    for setting, cases in results.items():
        label = f"{' + '.join(dict.fromkeys(c[2] for c in cases))} cg {setting.cg_iters}"
        scored = [c[3] for c in cases]
        subjects = [c[1] for c in cases]
        groups = subjects if len(set(subjects)) > 1 else [c[0] for c in cases]
        held = (
            leave_one_out_model(
                scored,
                [config.num_samples] * len(cases),
                groups,
                ALPHA,
                exponents,
                tolerance,
                config.guarantee,
            )
            if len(cases) > 1
            else []
        )
        for i, (name, _, spec_label, c) in enumerate(cases):
            raw = coverage(c.ratios(), 2.0)
            if held:
                h = held[i]
                ratios = c.ratios(h.noise_weight, h.residual_exponent, h.residual_tolerance)
                after = f"{coverage(ratios, h.factor * fk):.3f}"
                factor = f"{h.noise_weight:g}, {h.factor:.2f}"
            else:
                after, factor = "n/a (one case)", ""
            print(
                f"| {name} | {spec_label} cg {setting.cg_iters} | {raw:.3f} | {after} | {factor} |"
            )
        fit = fit_model(
            scored,
            [config.num_samples] * len(cases),
            ALPHA,
            NOISE_WEIGHTS,
            exponents,
            tolerance,
            config.guarantee,
        )
        before = float(np.mean([coverage(c.ratios(), 2.0) for c in scored]))
        data = f"{len(cases)} cases from {', '.join(sorted(set(subjects)))} ({label}, simulated coils x{config.coils}, noise {config.noise:g})"
        entries.append(
            CalibrationEntry(
                replace(setting, matrix=int(np.median(matrices[setting]))),
                fit.factor,
                fit.method,
                len(cases),
                data,
                before,
                fit.mean_coverage,
                noise_weight=fit.noise_weight,
                residual_exponent=fit.residual_exponent,
                residual_tolerance=fit.residual_tolerance,
            )
        )
        print(
            f"{label}: noise_weight {fit.noise_weight:g}, factor {fit.factor:.3f} fitted on all {len(cases)} cases ({fit.method}); "
            f"mean coverage {before:.3f} raw -> {fit.mean_coverage:.3f}; held out by "
            + ("subject" if groups is subjects else "case (one subject)")
        )
    old = entries_from_card(read_card(source))
    card = write_calibration(
        source,
        calibration_block(merged(old, tuple(entries))),
        None if config.in_place else config.out,
    )
    print(f"calibration written into {card}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    from gadget.config import GadgetConfig

    p = commands.add_parser("calibrate", help="fit a prior's std calibration on fully sampled data")
    p.add_argument(
        "--data", type=Path, nargs="+", required=True, help="folders or files (NIfTI/MGZ/HDF5)"
    )
    p.add_argument("--checkpoint", default="default", help="prior .safetensors, or 'default'")
    p.add_argument("--out", type=Path, help="card (.json) or stem of the calibrated copy")
    p.add_argument("--in-place", action="store_true", help="write into the prior's own card")
    p.add_argument(
        "--masks", nargs="+", default=["random:4"], help="KIND:R, KIND random/equispaced/poisson"
    )
    p.add_argument("--sampler", default="dds")
    p.add_argument("--nfe", type=int, default=25)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument(
        "--linear-width",
        action="store_true",
        help="with --samples 1: fit the linear-Gaussian width the replay's --linear-width sends",
    )
    defaults = GadgetConfig()
    p.add_argument("--cg-iters", type=int, default=defaults.cg_iters)
    p.add_argument(
        "--cg-iters-inside",
        type=int,
        default=defaults.cg_iters_inside,
        help="as the replay: CG iterations for line masks with the object inside the FOV "
        "(0: --cg-iters)",
    )
    p.add_argument(
        "--cg-iters-cut",
        type=int,
        default=defaults.cg_iters_cut,
        help="as the replay: CG iterations where the FOV cuts the object on both sides "
        "(0: --cg-iters)",
    )
    p.add_argument("--crop", type=int, default=128, help="centre crop of every slice")
    p.add_argument("--slices-per-subject", type=int, default=2)
    p.add_argument("--coils", type=int, default=8, help="simulated coils")
    p.add_argument(
        "--noise", type=float, default=0.02, help="noise per real channel (image p99 = 1)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--fit",
        choices=("risk-control", "mean"),
        default="risk-control",
        help="risk-control: with >= 19 cases per setting, the conformal bound that a new case's "
        "expected coverage is >= 0.95 (it asks 0.99 of 24 cases, 0.96 of 100); mean: the mean "
        "case coverage 0.95, no finite-sample guarantee (what fewer cases get either way)",
    )


def main(args: argparse.Namespace) -> int:
    from diffusion_core.checkpoint import CheckpointError

    try:
        config = CalibrateConfig(
            tuple(args.data),
            args.checkpoint,
            args.out,
            args.in_place,
            tuple(args.masks),
            args.sampler,
            args.nfe,
            args.samples,
            args.cg_iters,
            args.cg_iters_inside,
            args.cg_iters_cut,
            args.crop,
            args.slices_per_subject,
            args.coils,
            args.noise,
            args.seed,
            args.device,
            not args.no_progress,
            args.fit == "risk-control",
            args.linear_width,
        )
        return run(config)
    except (CalibrationDataError, CheckpointError, ValueError) as error:
        print(f"gadgetron-diffusion calibrate: {error}", file=sys.stderr)
        return 2
