"""A new user's check: held-out slices written as ISMRMRD raw files, replayed through the product's
CLI at its defaults, against BART's own L1-wavelet (``bart ecalib -m1`` + ``bart pics -l1``).

The generalization benchmark (``benchmarks/generalization.py``) calls ``reconstruct`` on arrays at
CPU sizes (96 x 96) and gives the L1-wavelet baseline the product's maps. This script checks the
whole path a user takes, at a scanner's matrix:

1. a slice of a volume the shipped prior never saw (default ``niivue_FLAIR``; ``--volume`` any
   NIfTI / MGZ) placed in a FOV of ``--matrix`` pixels (about 1 mm at 192), simulated coils of
   the generalization benchmark's kinds (:mod:`benchmarks.generalization_cases`) and white noise;
2. undersampled with 1D random phase-encode lines (R=4: 20, R=8: 16 ACS lines per 180, as the
   benchmark), written as an ISMRMRD file the way a scanner sends it: a noise scan, one
   acquisition per sampled ky line, embedded calibration lines flagged, the acceleration in the
   header;
3. replayed with ``gadgetron-diffusion replay`` (a subprocess, defaults only) and read back;
4. the same undersampled k-space given to BART: ``ecalib -m1`` and ``-m2`` maps (``--bart-sets``;
   two sets combined by root sum of squares), ``pics -S -l1 -r w`` for each of ``--l1-weights``
   (the best image is kept: an oracle choice that favours the baseline).

Per case: PSNR of the magnitude over the object (best scalar fit, :func:`diffusion_core.metrics.psnr`),
the margin over BART, the false-signal figure of ``generalization.py`` for both, the replay's
CG-iteration choice and wall time. The summary is the minimum and median over cases.

    PYTHONPATH=$PWD python benchmarks/replay_check.py --data-dir ../shared/data --cases 4 \
        --out benchmarks/results/replay_check.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import ismrmrd
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import false_signal, outside_object  # noqa: E402
from benchmarks.generalization_cases import (  # noqa: E402
    EQUISPACED_CLASSES,
    Case,
    case_plan,
    load_subject,
    make_case,
    make_mask,
)
from benchmarks.prior_quality import within_2std  # noqa: E402
from diffusion_core.fft import fft2c  # noqa: E402
from diffusion_core.metrics import object_region, psnr  # noqa: E402
from gadget.datasets import open_read_only  # noqa: E402

MASKS = ("R=4 1D random", "R=8 1D random")
ACCELERATION = {"R=4 1D random": 4, "R=8 1D random": 8} | {m: int(m[2]) for m in EQUISPACED_CLASSES}

HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>127740000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{nx}</x><y>{ny}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx:.3f}</x><y>{fy:.3f}</y><z>5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{nx}</x><y>{ny}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fx:.3f}</x><y>{fy:.3f}</y><z>5</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_0><minimum>0</minimum><maximum>{nx1}</maximum><center>{cx}</center></kspace_encoding_step_0>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{ny1}</maximum><center>{cy}</center></kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
    <parallelImaging>
      <accelerationFactor><kspace_encoding_step_1>{r}</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>
      <calibrationMode>embedded</calibrationMode>
    </parallelImaging>
  </encoding>
</ismrmrdHeader>
"""


@dataclass
class Row:
    case: str
    mask: str
    seed: int
    product_psnr: float
    bart_psnr: float
    bart_weight: float
    margin: float
    product_false_signal: float
    bart_false_signal: float
    cg_iters: str
    cg_selection: str
    coverage: float
    replay_s: float
    bart_s: float
    # the ESPIRiT map sets of BART's best image (ecalib -m1 / -m2), and the replay's
    bart_sets: int = 1
    map_sets: str = "1"


def line_mask(mask_class: str, n: int, seed: int) -> np.ndarray:
    """(ky,) bool: the sampled phase-encode lines (the benchmark's column mask, one row of it)."""
    return make_mask(mask_class, (n, n), seed)[0].numpy() > 0


def coloured(case: Case, mixing: float) -> tuple[Case, np.ndarray]:
    """The case with its receiver noise correlated between coils: noise ``A z`` with
    ``A = I + mixing G`` (G complex Gaussian, unit variance per entry, seeded by the case) and
    ``z`` the case's white noise level; ``A`` is returned for the noise scan. ``mixing`` 0: the
    case as it is and the identity."""
    coils = case.kspace.shape[0]
    if mixing == 0:
        return case, np.eye(coils)
    rng = np.random.default_rng([case.meta.seed, 1])
    g = (rng.normal(size=(coils, coils)) + 1j * rng.normal(size=(coils, coils))) / np.sqrt(2)
    a = np.eye(coils) + mixing * g
    clean = fft2c(case.maps_true * case.reference).numpy()
    z = case.noise_sigma * (rng.normal(size=clean.shape) + 1j * rng.normal(size=clean.shape))
    kspace = clean + np.tensordot(a, z, axes=([1], [0]))
    return replace(case, kspace=torch.from_numpy(kspace.astype(np.complex64))), a


def write_raw(
    path: Path,
    case: Case,
    lines: np.ndarray,
    acceleration: int,
    noise_matrix: np.ndarray | None = None,
    noise_samples: int = 256,
) -> None:
    """ISMRMRD file as a scanner writes it: a noise scan of ``noise_samples`` samples (white at
    the case's noise level, times ``noise_matrix`` if given), then the sampled ky lines in order."""
    kspace = case.kspace.numpy()  # (coils, ky, kx)
    coils, ny, nx = kspace.shape
    pixel = case.meta.pixel_mm
    acs = np.zeros(ny, dtype=bool)
    run = ny // 2
    while run > 0 and lines[run - 1]:
        run -= 1
    end = ny // 2
    while end < ny and lines[end]:
        end += 1
    acs[run:end] = True
    header = HEADER.format(
        coils=coils,
        nx=nx,
        ny=ny,
        nx1=nx - 1,
        ny1=ny - 1,
        cx=nx // 2,
        cy=ny // 2,
        fx=nx * pixel,
        fy=ny * pixel,
        r=acceleration,
    )
    rng = np.random.default_rng(case.meta.seed)
    sigma = case.noise_sigma
    sampled = np.flatnonzero(lines)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dataset:
        dataset.write_xml_header(header)
        shape = (coils, noise_samples)
        noise = sigma * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
        if noise_matrix is not None:
            noise = noise_matrix @ noise
        acq = ismrmrd.Acquisition.from_array(noise.astype(np.complex64))
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dataset.append_acquisition(acq)
        for count, ky in enumerate(sampled, start=1):
            acq = ismrmrd.Acquisition.from_array(kspace[:, ky].astype(np.complex64))
            acq.scan_counter = count
            acq.center_sample = nx // 2
            acq.sample_time_us = 5.0
            acq.read_dir[:] = (1.0, 0.0, 0.0)
            acq.phase_dir[:] = (0.0, 1.0, 0.0)
            acq.slice_dir[:] = (0.0, 0.0, 1.0)
            acq.idx.kspace_encode_step_1 = int(ky)
            if acs[ky]:
                acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            if count == 1:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
            if count == len(sampled):
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            dataset.append_acquisition(acq)


def replay(
    raw: Path, out: Path, extra: list[str]
) -> tuple[np.ndarray, np.ndarray | None, dict[str, str], float]:
    """The replay CLI at its defaults (plus ``extra``): the mean image (y, x), the std image
    (None where none was sent) and the mean's meta."""
    start = time.perf_counter()
    cmd = ["gadgetron-diffusion", "replay", str(raw), str(out), "--no-progress", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    with open_read_only(out, "dataset") as dataset:
        image = dataset.read_image("image_1", 0)
        groups = dataset.list()
        std = dataset.read_image("image_2", 0).data[0, 0] if "image_2" in groups else None
    meta = ismrmrd.Meta.deserialize(image.attribute_string)
    mean = np.asarray(image.data[0, 0])
    return mean, None if std is None else np.asarray(std), dict(meta), seconds


def bart_l1(
    kspace: np.ndarray, weights: list[float], work: Path, sets: tuple[int, ...] = (1,)
) -> tuple[list[tuple[np.ndarray, int, float]], float]:
    """``bart ecalib -mM`` for each M of ``sets``, then ``bart pics -S -l1 -r w`` for each
    weight: (image (y, x), M, w); with two sets the root sum of squares of the sets' images (as
    ``bart rss``)."""
    from tests.diffusion_core.bart_io import read_cfl, write_cfl

    start = time.perf_counter()
    write_cfl(work / "k", kspace)
    images = []
    for m in sets:
        subprocess.run(
            ["bart", "ecalib", f"-m{m}", work / "k", work / "s"], check=True, capture_output=True
        )
        for w in weights:
            subprocess.run(
                ["bart", "pics", "-S", "-l1", "-r", f"{w:g}", work / "k", work / "s", work / "x"],
                check=True,
                capture_output=True,
            )
            x = read_cfl(work / "x")
            images.append((np.sqrt((np.abs(x) ** 2).sum(0)) if x.ndim == 3 else x, m, w))
    return images, time.perf_counter() - start


def check_case(case: Case, mask_class: str, seed: int, args: argparse.Namespace) -> Row:
    case, mixing = coloured(case, args.noise_mixing)
    n = case.kspace.shape[-2]
    lines = line_mask(mask_class, n, seed)
    ref = case.reference
    obj = object_region(ref)
    outside = outside_object(ref, 4)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_raw(
            work / "raw.h5", case, lines, ACCELERATION[mask_class], mixing, args.noise_samples
        )
        mean, std, meta, replay_s = replay(work / "raw.h5", work / "out.h5", args.replay_args)
        undersampled = case.kspace.numpy() * lines[None, :, None]
        images, bart_s = bart_l1(undersampled, args.l1_weights, work, tuple(args.bart_sets))
    mean_t = torch.from_numpy(mean)
    scores = [psnr(ref, torch.from_numpy(img), obj) for img, _, _ in images]
    best = int(np.argmax(scores))
    product = psnr(ref, mean_t, obj)
    return Row(
        case.meta.name,
        mask_class,
        seed,
        product,
        scores[best],
        images[best][2],
        product - scores[best],
        false_signal(ref, mean_t, outside),
        false_signal(ref, torch.from_numpy(images[best][0]), outside),
        meta.get("DataConsistencyCGIterations", "?"),
        meta.get("DataConsistencyCGSelection", ""),
        float("nan") if std is None else within_2std(ref, mean_t, torch.from_numpy(std)),
        replay_s,
        bart_s,
        images[best][1],
        meta.get("CoilMapSets", "?"),
    )


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    out = [
        "# Replay at its defaults against BART's L1-wavelet, on held-out slices written as ISMRMRD",
        "",
        "Command:",
        "",
        "    PYTHONPATH=$PWD python benchmarks/replay_check.py " + " ".join(args.argv),
        "",
        "| case | mask | seed | replay PSNR | BART L1 PSNR (weight, map sets) | margin dB | false signal replay / BART | cg_iters | map sets | within 2 std | replay s | BART s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.case} | {r.mask} | {r.seed} | {r.product_psnr:.2f} | {r.bart_psnr:.2f} "
            f"({r.bart_weight:g}, -m{r.bart_sets}) | {r.margin:+.2f} | "
            f"{r.product_false_signal:.3f} / {r.bart_false_signal:.3f} | {r.cg_iters} | "
            f"{r.map_sets} | {r.coverage:.3f} | {r.replay_s:.0f} | "
            f"{r.bart_s:.0f} |"
        )
    out += [
        "",
        "| mask | cases | margin min | margin median | false signal replay - BART, max "
        "| within 2 std min / median |",
        "|---|---|---|---|---|---|",
    ]
    for mask in args.masks:
        sel = [r for r in rows if r.mask == mask]
        if sel:
            margins = [r.margin for r in sel]
            fs = max(r.product_false_signal - r.bart_false_signal for r in sel)
            cover = [r.coverage for r in sel]
            out.append(
                f"| {mask} | {len(sel)} | {min(margins):+.2f} | "
                f"{statistics.median(margins):+.2f} | {fs:+.3f} | "
                f"{min(cover):.3f} / {statistics.median(cover):.3f} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--volume", type=Path, help="NIfTI / MGZ volume (default: niivue_FLAIR)")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--case-seed", type=int, default=7)
    p.add_argument("--matrix", type=int, default=192)
    p.add_argument("--masks", nargs="+", default=list(MASKS), choices=MASKS + EQUISPACED_CLASSES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--l1-weights", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    p.add_argument(
        "--bart-sets",
        type=int,
        nargs="+",
        default=[1, 2],
        choices=(1, 2),
        help="ESPIRiT map sets of BART's baseline (ecalib -m1 / -m2); the best image is kept",
    )
    p.add_argument(
        "--replay-args", default="", help="extra replay options, e.g. '--cg-iters-inside 0'"
    )
    p.add_argument(
        "--noise-mixing",
        type=float,
        default=0.0,
        help="receiver noise correlated between coils: A = I + m G (0: white noise)",
    )
    p.add_argument("--noise-samples", type=int, default=256, help="samples of the noise scan")
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.replay_args = args.replay_args.split()
    if shutil.which("bart") is None:
        p.error("bart not found: install Debian's bart (apt-get install bart)")
    volume = args.volume or args.data_dir / "train_volumes" / "niivue_FLAIR.nii.gz"
    subject = load_subject(volume)
    rows = []
    for spec in case_plan(subject, args.cases, (args.matrix, args.matrix), args.case_seed):
        case = make_case(
            subject, spec.slice_spec, spec.coils, spec.noise_level, spec.placement, spec.seed
        )
        for mask_class in args.masks:
            for seed in args.seeds:
                row = check_case(case, mask_class, seed, args)
                rows.append(row)
                print(
                    f"{row.case} | {mask_class} | seed {seed}: replay {row.product_psnr:.2f} dB "
                    f"(cg_iters {row.cg_iters}, {row.replay_s:.0f} s), BART {row.bart_psnr:.2f} "
                    f"dB (w {row.bart_weight:g}): {row.margin:+.2f}",
                    flush=True,
                )
    text = markdown(rows, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
