"""Ablation of the reconstruction's choices on the held-out cases of the generalization benchmark.

Each variant names a coil-map recipe (ESPIRiT calibration size, threshold, crop), a support rule
(the maps' non-zero pixels as in the product, none = the sampler may put signal anywhere, as
before the support change, or the maps' support dilated by n pixels over maps of a lower crop;
``truemaps``: the simulation's own coil maps, to tell map errors from noise; ``softmaps``: ESPIRiT
maps weighted by a smooth ramp of their top eigenvalue, :func:`diffusion_core.espirit.soft_weights`)
and sampler settings (ReconConfig fields). L1-wavelet (best of the benchmark's weights) is run
once per map recipe, on the same maps, so each variant's margin is against L1 with its own maps.
The reference is the benchmark's (full-data ESPIRiT at the product's defaults) for every variant.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/quality_ablation.py --variants base nosupport \\
        --cases-per-subject 4 --seeds 0 1 --json benchmarks/results/ablation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generalization import (  # noqa: E402
    DATA,
    L1_WEIGHTS,
    build_cases,
    false_signal,
    outside_object,
)
from benchmarks.generalization_cases import MASK_CLASSES, make_mask  # noqa: E402
from diffusion_core import data_consistency as dc_module  # noqa: E402
from diffusion_core import reconstruct as recon_module  # noqa: E402
from diffusion_core.classical import l1_wavelet  # noqa: E402
from diffusion_core.espirit import espirit_maps  # noqa: E402
from diffusion_core.metrics import psnr  # noqa: E402
from diffusion_core.reconstruct import ReconConfig, reconstruct  # noqa: E402

log = logging.getLogger("ablation")


@dataclass(frozen=True)
class Variant:
    maps: tuple[tuple[str, object], ...] = ()  # espirit_maps keyword arguments
    support: str = "maps"  # "maps", "none", or "dilate:<n>:<crop>" (support of ``maps``, dilated)
    recon: dict[str, object] = field(default_factory=dict)
    true_maps: bool = False  # the simulation's coil maps instead of ESPIRiT (a diagnosis only)


OLD_MAPS = (("calib_size", 10_000), ("threshold", 0.02), ("crop", 0.95))
VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    "nosupport": Variant(support="none"),
    "old_maps_nosupport": Variant(maps=OLD_MAPS, support="none"),  # before both changes
    "old_maps": Variant(maps=OLD_MAPS),
    "fullcalib": Variant(maps=(("calib_size", 10_000),)),
    "crop0.95": Variant(maps=(("crop", 0.95),)),
    "crop0.5": Variant(maps=(("crop", 0.5),)),
    "thr0.02": Variant(maps=(("threshold", 0.02),)),
    "kernel5": Variant(maps=(("kernel_size", 5),)),
    "crop0.2": Variant(maps=(("crop", 0.2),)),
    "dilate2": Variant(support="dilate:2:0.2"),
    "dilate4": Variant(support="dilate:4:0.2"),
    "dilate4_crop0": Variant(support="dilate:4:0.0"),
    "truemaps": Variant(true_maps=True),
    # soft-SENSE weights: maps times a smoothstep of the top eigenvalue from crop 0.8 to the value
    "softmaps": Variant(maps=(("soft", 0.99),)),
    "softmaps1.0": Variant(maps=(("soft", 1.0),)),
}


def parse_variant(name: str) -> Variant:
    """A named variant, optionally followed by ReconConfig overrides: ``base,cg_iters=10``."""
    head, *over = name.split(",")
    v = VARIANTS[head]
    extra: dict[str, object] = {}
    for item in over:
        key, _, value = item.partition("=")
        extra[key] = value if key in ("sampler", "schedule") else float(value)
        if key in ("nfe", "num_samples", "cg_iters"):
            extra[key] = int(float(value))
    return replace(v, recon={**v.recon, **extra})


@contextmanager
def no_support() -> Iterator[None]:
    """Reconstruct on the whole image (the behaviour before the support change)."""
    saved = dc_module.image_support, recon_module.image_support

    def everywhere(maps: torch.Tensor, support: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(maps.shape[-2:], dtype=torch.bool, device=maps.device)

    dc_module.image_support = recon_module.image_support = everywhere  # type: ignore[assignment]
    try:
        yield
    finally:
        dc_module.image_support, recon_module.image_support = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--subjects", nargs="+", default=["niivue_FLAIR", "real"])
    p.add_argument("--cases-per-subject", type=int, default=4)
    p.add_argument("--case-seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--real-size", type=int, default=128)
    p.add_argument("--masks", nargs="+", default=list(MASK_CLASSES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["base"])
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--only", nargs="+", default=None, help="case names containing one of these")
    args = p.parse_args()
    torch.set_num_threads(1)
    from diffusion_core.checkpoint import load_checkpoint
    from diffusion_core.priors import DEFAULT_PRIOR_PATH

    denoiser = load_checkpoint(Path(DEFAULT_PRIOR_PATH), device=torch.device("cpu"))
    for q in denoiser.parameters():
        q.requires_grad_(False)
    ns = argparse.Namespace(
        data_dir=args.data_dir,
        subjects=args.subjects,
        cases_per_subject=args.cases_per_subject,
        case_seed=args.case_seed,
        size=args.size,
        real_size=args.real_size,
    )
    cases = build_cases(ns)
    if args.only:
        cases = [c for c in cases if any(o in c.meta.name for o in args.only)]
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    done = {(r["variant"], r["case"], r["mask"], r["seed"]) for r in rows}
    for seed in args.seeds:
        for case in cases:
            ref = case.reference
            outside = outside_object(ref, 4)
            for mask_class in args.masks:
                mask = make_mask(mask_class, tuple(ref.shape[-2:]), seed)
                kspace = case.kspace * mask
                l1_cache: dict[tuple, tuple[float, float]] = {}
                for name in args.variants:
                    key = (name, case.meta.name, mask_class, seed)
                    if key in done:
                        continue
                    v = parse_variant(name)
                    maps = espirit_maps(kspace, mask, **dict(v.maps))  # type: ignore[arg-type]
                    if v.true_maps:
                        maps = case.maps_true
                    recipe = ("true",) if v.true_maps else v.maps
                    if recipe not in l1_cache:
                        l1 = max(
                            (l1_wavelet(kspace, mask, maps, lam=w) for w in L1_WEIGHTS),
                            key=lambda im: psnr(ref, im),
                        )
                        l1_cache[recipe] = (psnr(ref, l1), false_signal(ref, l1, outside))
                    support = None
                    if v.support.startswith("dilate"):
                        from scipy.ndimage import binary_dilation

                        _, n, low = v.support.split(":")
                        inner = maps.abs().sum(0) > 0
                        support = torch.from_numpy(
                            binary_dilation(inner.numpy(), np.ones((3, 3), bool), int(n))
                        )
                        maps = espirit_maps(kspace, mask, **{**dict(v.maps), "crop": float(low)})  # type: ignore[arg-type]
                    cfg = ReconConfig(
                        **{"nfe": 25, "num_samples": args.samples, "cg_iters": 5, **v.recon}  # type: ignore[arg-type]
                    )
                    g = torch.Generator().manual_seed(seed)
                    start = time.perf_counter()
                    if v.support == "none":
                        with no_support():
                            res = reconstruct(kspace, mask, denoiser, cfg, maps=maps, generator=g)
                    else:
                        res = reconstruct(
                            kspace, mask, denoiser, cfg, maps=maps, support=support, generator=g
                        )
                    secs = time.perf_counter() - start
                    l1_psnr, l1_fs = l1_cache[recipe]
                    row = {
                        "variant": name,
                        "case": case.meta.name,
                        "mask": mask_class,
                        "seed": seed,
                        "psnr_pm": psnr(ref, res.mean),
                        "psnr_l1": l1_psnr,
                        "fs_pm": false_signal(ref, res.mean, outside),
                        "fs_l1": l1_fs,
                        "support": float(res.support.float().mean()),
                        "seconds": secs,
                    }
                    row["margin"] = row["psnr_pm"] - row["psnr_l1"]
                    rows.append(row)
                    log.info(
                        "%s | %s | %s | %d: pm %.2f l1 %.2f margin %+.2f fs %.3f/%.3f %.0fs",
                        name,
                        case.meta.name[:30],
                        mask_class,
                        seed,
                        row["psnr_pm"],
                        l1_psnr,
                        row["margin"],
                        row["fs_pm"],
                        l1_fs,
                        secs,
                    )
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(rows, indent=1))
    summarize(rows)


def summarize(rows: list[dict], against: str | None = None) -> None:
    """Per variant, group (real / simulated) and mask: min / median over cases of the seed-median
    margin. ``against``: a variant whose L1-wavelet (on its maps) is every variant's comparator,
    on the same case, mask and seed, so that map recipes that also change L1 are not flattered by
    a weaker L1 (``--summary FILE base``)."""
    l1 = {(r["case"], r["mask"], r["seed"]): r for r in rows if r["variant"] == against}
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        if against is not None:
            ref = l1[(r["case"], r["mask"], r["seed"])]
            r = {**r, "psnr_l1": ref["psnr_l1"], "fs_l1": ref["fs_l1"]}
            r["margin"] = r["psnr_pm"] - r["psnr_l1"]
        g = "real" if r["case"].startswith("brain8ch") else "sim"
        groups.setdefault((r["variant"], g, r["mask"]), {}).setdefault(r["case"], []).append(r)
    for key in sorted(groups):
        per_case = groups[key]
        m = [statistics.median(x["margin"] for x in v) for v in per_case.values()]
        pm = [statistics.median(x["psnr_pm"] for x in v) for v in per_case.values()]
        fs = [statistics.median(x["fs_pm"] - x["fs_l1"] for x in v) for v in per_case.values()]
        n = sum(len(v) for v in per_case.values())
        print(
            f"{key[0]:28s} {key[1]:4s} {key[2]:15s} n={n:2d} margin min {min(m):+.2f} med "
            f"{statistics.median(m):+.2f} | psnr min {min(pm):.2f} med {statistics.median(pm):.2f}"
            f" | fs-l1 max {max(fs):+.3f}"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if sys.argv[1:2] == ["--summary"]:
        summarize(json.loads(Path(sys.argv[2]).read_text()), *sys.argv[3:4])
    else:
        main()
