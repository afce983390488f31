"""The statistic behind ``ReconConfig.cg_iters_inside``: is the object inside the field of view?

For each line-mask case, the mean magnitude of the outer ``FOV_EDGE_LINES`` phase-encode lines of
the CG-SENSE image (ESPIRiT maps from the ACS, as :func:`diffusion_core.reconstruct.reconstruct`
computes it for its scale) over the image scale, next to the reference's own value and, where
both caches of ``benchmarks/calibrate_default.py`` (cg_iters 5 and 10) hold the case, the PSNR
of the posterior mean with each:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/fov_rule.py --caches /tmp/uncert/dev128.pt /tmp/uncert/dev128_cg10.pt
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/fov_rule.py --noise-sweep
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import DATA, build_cases  # noqa: E402
from benchmarks.generalization import parse_args as benchmark_args  # noqa: E402
from benchmarks.generalization_cases import make_mask  # noqa: E402
from diffusion_core.classical import cg_sense  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.masks import phase_encode_axis  # noqa: E402
from diffusion_core.metrics import psnr  # noqa: E402
from diffusion_core.normalization import magnitude_scale  # noqa: E402
from diffusion_core.reconstruct import (  # noqa: E402
    FOV_CUT_SIGNAL,
    FOV_EDGE_SIGNAL,
    FOV_RULE_NOISE,
    ReconConfig,
    fov_edge_sides,
    fov_edge_signal,
)
from gadget.config import GadgetConfig  # noqa: E402

LINE_MASKS = ("R=4 1D random", "R=8 1D random")


def sides(
    kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor
) -> tuple[float, float, float]:
    """The rule's statistics for one slice (masked kspace, mask, maps): the low and high side's
    outer phase-encode lines of the CG-SENSE image over its scale (inside: their mean under
    FOV_EDGE_SIGNAL; cut on both sides: both at least FOV_CUT_SIGNAL), and that scale."""
    sense = cg_sense(kspace, mask, maps, max_iter=ReconConfig().cg_iters * 4)
    scale = float(magnitude_scale(sense))
    low, high = fov_edge_sides(sense, phase_encode_axis(mask))
    return low / scale, high / scale, scale


def reference_edge(ref: torch.Tensor, mask: torch.Tensor) -> float:
    return fov_edge_signal(ref, phase_encode_axis(mask)) / float(magnitude_scale(ref))


def noise_sweep(data_dir: Path) -> None:
    """The rule's decision on a head well inside the FOV (a T1 volume's three central slices,
    padded to 1.2x, 128 x 128, simulated coils) across noise levels, coils and masks: what the
    noise alone does to the statistics (a mechanics check; the subject is one the prior saw)."""
    import nibabel as nib
    import numpy as np

    from diffusion_core.calibration_cases import simulated_measurement
    from diffusion_core.masks import random_columns_mask
    from diffusion_core.reconstruct import CUT, INSIDE, estimate_noise_sigma, fov_place

    defaults = GadgetConfig()
    vol = np.asarray(nib.load(data_dir / "train_volumes" / "niivue_chris_t1.nii.gz").dataobj)
    g = torch.Generator().manual_seed(0)
    print(
        "| slice axis | noise | coils | R | low / high side | noise estimate | place | cg_iters |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for axis in (2, 1, 0):
        plane = torch.from_numpy(np.take(vol, vol.shape[axis] // 2, axis=axis).astype(np.float32))
        n = int(max(plane.shape) * 1.2) // 2 * 2
        img = torch.zeros(n, n)
        y0, x0 = (n - plane.shape[0]) // 2, (n - plane.shape[1]) // 2
        img[y0 : y0 + plane.shape[0], x0 : x0 + plane.shape[1]] = plane
        img = torch.nn.functional.interpolate(img[None, None], size=(128, 128), mode="bilinear")
        for noise in (0.005, 0.02, 0.05, 0.1):
            for coils in (8, 16):
                kspace, _ = simulated_measurement(img[0, 0], coils, noise, g)
                for r, acs in ((4, 24), (8, 12)):
                    mask = random_columns_mask((128, 128), r, acs, 0)
                    measured = kspace * mask
                    maps = espirit_maps(measured, mask)
                    low, high, scale = sides(measured, mask, maps)
                    sigma = estimate_noise_sigma(measured, mask) / scale
                    place = fov_place(low, high)
                    cg = defaults.cg_iters
                    if place == INSIDE and sigma < FOV_RULE_NOISE:
                        cg = defaults.cg_iters_inside
                    elif place == CUT:
                        cg = defaults.cg_iters_cut
                    print(
                        f"| {axis} | {noise:g} | {coils} | {r} | {low:.3f} / {high:.3f} | "
                        f"{sigma:.3f} | {place} | {cg} |"
                    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--caches", nargs=2, type=Path, help="calibrate_default caches, cg 5 and 10")
    p.add_argument("--noise-sweep", action="store_true", help="only the noise sweep")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.noise_sweep:
        noise_sweep(args.data_dir)
        return
    print(f"limit: {FOV_EDGE_SIGNAL:g} (below: the object is inside, cg_iters_inside)\n")
    print(f"cut: both sides from {FOV_CUT_SIGNAL:g}\n")
    print(
        "| case (generalization benchmark) | mask | seeds | edge statistic | low / high side "
        "| reference's |"
    )
    print("|---|---|---|---|---|---|")
    plan = ["--subjects", "niivue_FLAIR", "real", "--cases-per-subject", "4", "--size", "96"]
    cases = build_cases(
        benchmark_args(["--data-dir", str(args.data_dir), *plan, "--real-size", "128"])
    )
    for case in cases:
        for mask_class in LINE_MASKS:
            pairs = []
            for seed in args.seeds:
                mask = make_mask(mask_class, tuple(case.reference.shape[-2:]), seed)
                kspace = case.kspace * mask
                pairs.append(sides(kspace, mask, espirit_maps(kspace, mask))[:2])
            means = " / ".join(f"{(a + b) / 2:.3f}" for a, b in pairs)
            both = " ; ".join(f"{a:.3f} / {b:.3f}" for a, b in pairs)
            print(
                f"| {case.meta.name} | {mask_class} | {' '.join(map(str, args.seeds))} | "
                f"{means} | {both} | {reference_edge(case.reference, mask):.3f} |"
            )
    if not args.caches:
        return
    five, ten = (torch.load(path, weights_only=True) for path in args.caches)
    print("\n| case (calibration development set) | mask | edge statistic | low / high side "
          "| reference's | PSNR cg 5 / 10 | 10 - 5 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for key, r in five.items():
        mask_class = key.split("|")[1]
        if mask_class not in LINE_MASKS or key not in ten:
            continue
        mask = (r["mask"] != 0).float()
        a, b = psnr(r["ref"], r["mean"]), psnr(ten[key]["ref"], ten[key]["mean"])
        low, high, _ = sides(r["kspace"], mask, r["maps"])
        print(
            f"| {key.split('|')[-1]} | {mask_class} | {(low + high) / 2:.3f} | {low:.3f} / "
            f"{high:.3f} | {reference_edge(r['ref'], mask):.3f} | {a:.2f} / {b:.2f} | {b - a:+.2f} |"
        )


if __name__ == "__main__":
    main()
