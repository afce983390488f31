"""Search for a half-width model that transfers between subjects (issue #14), on the cache of
:mod:`benchmarks.calibrate_default` (``--cache``), leave-one-subject-out.

Each candidate is a variance model v = std_raw^2 + sum_j w_j q_j (q_j per-pixel maps computable at
reconstruction time from the data and the samples, never from the reference), with the half-width
h = factor * finite_k_factor(K) * sqrt(v). The weights come from a grid, chosen on the calibration
cases (the other subject) by a criterion; the factor by empirical mean coverage 0.95
(:func:`diffusion_core.uncertainty.fit_factor`), as the shipped model.

    python benchmarks/uncertainty_model_search.py --cache /tmp/uncert/dev128.pt
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.metrics import object_region  # noqa: E402
from diffusion_core.uncertainty import (  # noqa: E402
    NOISE_WEIGHTS,
    _other_groups,
    coverage,
    data_residual_ratio,
    finite_k_factor,
    fit_factor,
)

MASKS = ("R=4 1D random", "R=8 1D random", "R=8 2D Poisson")
K = 4


@dataclass
class Case:
    name: str
    subject: str
    error: np.ndarray  # | a|mean| - |ref| | / a on the scored pixels
    q: dict[str, np.ndarray]  # per-pixel variance components (std2 = std_raw^2)
    stats: dict[str, float]  # per-case statistics from the data and samples


def box(x: torch.Tensor, width: int) -> torch.Tensor:
    k = torch.ones(1, 1, width, width, dtype=x.dtype) / width**2
    return torch.nn.functional.conv2d(x[None, None], k, padding=width // 2)[0, 0]


def load(r: dict, name: str) -> Case:
    ref = r["ref"].abs().double()
    mean_c = r["mean"].to(torch.complex128)
    m = mean_c.abs()
    std = r["std"].double()
    support = r["support"].bool()
    mask = r["mask"] != 0
    f = float(mask.float().mean())
    noise_var = f * r["noise"] ** 2
    inside = torch.from_numpy(object_region(ref.numpy())) & support
    a = float((m * ref).sum() / (m * m).sum())
    error = ((a * m - ref).abs() / a)[inside].numpy()
    sup = support.double()

    # local averages of the sample variance (the K = 4 per-pixel std is noisy), inside the support
    def local(x: torch.Tensor, w: int) -> torch.Tensor:
        return box(x * sup, w) / box(sup, w).clamp_min(1e-12)

    gy, gx = torch.gradient(m)
    grad2 = gy**2 + gx**2
    q = {
        "std2": std**2,
        "noise": torch.full_like(std, noise_var) * sup,
        "mean2": m**2,
        "grad2": grad2,
        "std2_box3": local(std**2, 3),
        "std2_box5": local(std**2, 5),
        "mean2_box5": local(m**2, 5),
    }
    q = {k: v[inside].numpy() for k, v in q.items()}
    stats: dict[str, float] = {
        "snr": float(m[inside].mean() / max(noise_var, 1e-30) ** 0.5),
        "rel_std": float(std[inside].mean() / m[inside].mean()),
        "noise_over_std": float(noise_var**0.5 / std[inside].mean()),
    }
    if "kspace" in r and "maps" in r:
        from diffusion_core.fft import fft2c

        y = r["kspace"].to(torch.complex128)
        maps = r["maps"].to(torch.complex128)
        sig2 = 2 * r["noise"] ** 2  # complex variance per sampled entry
        stats["residual_mean"] = data_residual_ratio(y, mask, maps, mean_c, r["noise"])
        samples = r["samples"].to(torch.complex128)
        res_s = (fft2c(maps[None] * samples[:, None]) - y[None])[:, :, mask]
        stats["residual_samples"] = float((res_s.abs() ** 2).mean() / sig2)
        # energy of the mean's prediction off the sampled entries against that on them
        pred = fft2c(maps * mean_c)
        stats["unsampled_energy"] = float(
            (pred[:, ~mask].abs() ** 2).sum() / (pred[:, mask].abs() ** 2).sum()
        )
        stats["ssos_mean_ratio"] = float((maps.abs() ** 2).sum(0).sqrt()[support].mean())
        for component, weight in (("replica_proj", math.inf), ("replica_last", None)):
            q[component] = replica_variance(r, weight)[inside].numpy()
        stats["replica_over_noise"] = float(q["replica_last"].mean() / max(noise_var, 1e-30))
        rho = max(stats["residual_mean"], 1.0)
        q["misfit"] = np.full_like(q["std2"], (1 - f) * (rho - 1.0) * r["noise"] ** 2)
        stats["rho"] = rho
    return Case(name, r["subject"], error, q, stats)


REPLICAS = 16


def replica_variance(r: dict, weight: float | None, replicas: int = REPLICAS) -> torch.Tensor:
    """Pseudo-replica (Robson et al. 2008) variance per pixel of the noise one data-consistency
    step passes into the image: white noise of the case's level on its sampled entries, through
    the prox of :class:`SenseDataConsistency` at ``weight`` (inf: the projection; None: the
    weight of DDS's last step at the default settings), from a zero image; data units squared."""
    from diffusion_core.data_consistency import SenseDataConsistency
    from diffusion_core.noise import complex_noise
    from diffusion_core.reconstruct import ReconConfig

    cfg = ReconConfig()
    mask = (r["mask"] != 0).to(torch.float32)
    scale = float(r["scale"])
    sigma = float(r["noise"]) / scale  # per real channel, in the prior's normalisation
    g = torch.Generator().manual_seed(0)
    maps = r["maps"].to(torch.complex64)
    noise = complex_noise(torch.zeros((replicas, *maps.shape), dtype=torch.complex64), g)
    dc = SenseDataConsistency(maps, mask, torch.zeros_like(maps), sigma, cfg.cg_iters, r["support"])
    if weight is None:
        levels = [float(v) for v in cfg.sigmas()]
        last = levels[-2] if levels[-1] == 0 else levels[-1]
        trust = cfg.dc_scale * last**2 * 0.25 / (last**2 + 0.25)
        weight = dc.weight(trust)
    y = torch.fft.ifftshift(sigma * noise, dim=(-2, -1)) * dc.mask
    out = dc.prox(torch.zeros((replicas, *maps.shape[-2:]), dtype=torch.complex64), weight, y)
    return (out.abs() ** 2).mean(0).double() * scale**2


def variance(c: Case, weights: dict[str, float], base: str) -> np.ndarray:
    v = c.q[base].copy()
    for k, w in weights.items():
        if w and k not in ("birge", "tau"):
            v = v + w * c.q[k]
    # Birge-ratio inflation: variance x max(rho / tau, 1)^(2 gamma), rho the data misfit
    tau = weights.get("tau", 1.0)
    return v * max(c.stats["rho"] / tau, 1.0) ** (2 * weights.get("birge", 0.0))


def ratios(c: Case, weights: dict[str, float], base: str) -> np.ndarray:
    v = variance(c, weights, base)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, c.error / np.sqrt(np.where(v > 0, v, 1.0)), np.inf)


def spread(cases: list[Case], weights: dict[str, float], base: str) -> float:
    return float(np.std([np.log(np.quantile(ratios(c, weights, base), 0.95)) for c in cases]))


def inner(cases: list[Case], weights: dict[str, float], base: str) -> float:
    """Mean squared (coverage - 0.95) of each calibration case under the factor fitted on the
    other calibration cases (leave-one-case-out inside the calibration set)."""
    fk = finite_k_factor(K)
    rs = [ratios(c, weights, base) for c in cases]
    if len(rs) == 1:
        return 0.0
    out = []
    for j in range(len(rs)):
        f = fit_factor([r for i, r in enumerate(rs) if i != j], [K] * (len(rs) - 1))
        out.append((coverage(rs[j], f.factor * fk) - 0.95) ** 2)
    return float(np.mean(out))


def nll(cases: list[Case], weights: dict[str, float], base: str) -> float:
    """Half-normal negative log-likelihood of the errors under variance c^2 v, c profiled out,
    each case weighted equally."""
    total, c2 = 0.0, []
    for c in cases:
        v = np.maximum(variance(c, weights, base), 1e-30)
        c2.append(np.mean(c.error**2 / v))
    s2 = float(np.mean(c2))
    for c in cases:
        v = np.maximum(variance(c, weights, base), 1e-30)
        total += float(np.mean(np.log(s2 * v) + c.error**2 / (s2 * v)))
    return total / len(cases)


@dataclass(frozen=True)
class Model:
    label: str
    base: str
    grids: dict  # component -> grid of weights
    criterion: str  # "spread" or "nll"


def fit(model: Model, cases: list[Case]):
    keys = list(model.grids)
    best = None
    for values in itertools.product(*(model.grids[k] for k in keys)):
        w = dict(zip(keys, values, strict=True))
        if model.criterion == "spread":
            score = spread(cases, w, model.base)
        elif model.criterion == "spread_seq":  # the noise weight as without the inflation
            score = spread(cases, {**w, "birge": 0.0}, model.base)
        elif model.criterion == "inner":
            score = inner(cases, w, model.base)
        else:
            score = nll(cases, w, model.base)
        key = (round(score, 9), values)
        if best is None or key < best[0]:
            best = (key, w)
    w = best[1]
    f = fit_factor([ratios(c, w, model.base) for c in cases], [K] * len(cases))
    return w, f.factor


BETA = (0.0, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2)
REPLICA_WEIGHTS = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
GAMMA = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
MODELS = [
    Model("current: std^2 + w f sigma^2 (spread)", "std2", {"noise": NOISE_WEIGHTS}, "spread"),
    Model("std^2 + w f sigma^2 (nll)", "std2", {"noise": NOISE_WEIGHTS}, "nll"),
    Model("+ beta |mean|^2 (spread)", "std2", {"noise": NOISE_WEIGHTS, "mean2": BETA}, "spread"),
    Model("+ beta |mean|^2 (nll)", "std2", {"noise": NOISE_WEIGHTS, "mean2": BETA}, "nll"),
    Model("std^2 + beta |mean|^2 (nll)", "std2", {"mean2": BETA}, "nll"),
    Model("+ beta box5|mean|^2 (nll)", "std2", {"noise": NOISE_WEIGHTS, "mean2_box5": BETA}, "nll"),
    Model("+ gamma |grad mean|^2 (nll)", "std2", {"noise": NOISE_WEIGHTS, "grad2": GAMMA}, "nll"),
    Model("box3 std^2 + w f sigma^2 (spread)", "std2_box3", {"noise": NOISE_WEIGHTS}, "spread"),
    Model(
        "box3 std^2 + w + beta |mean|^2 (nll)",
        "std2_box3",
        {"noise": NOISE_WEIGHTS, "mean2": BETA},
        "nll",
    ),
    Model(
        "box5 std^2 + w + beta |mean|^2 (nll)",
        "std2_box5",
        {"noise": NOISE_WEIGHTS, "mean2": BETA},
        "nll",
    ),
    Model("std^2 + w f sigma^2 (inner)", "std2", {"noise": NOISE_WEIGHTS}, "inner"),
    Model("+ beta |mean|^2 (inner)", "std2", {"noise": NOISE_WEIGHTS, "mean2": BETA}, "inner"),
    Model("box3 std^2 + w f sigma^2 (inner)", "std2_box3", {"noise": NOISE_WEIGHTS}, "inner"),
    Model(
        "box3 std^2 + w + beta |mean|^2 (spread)",
        "std2_box3",
        {"noise": NOISE_WEIGHTS, "mean2": BETA},
        "spread",
    ),
    Model(
        "box3 std^2 + w + beta |mean|^2 (inner)",
        "std2_box3",
        {"noise": NOISE_WEIGHTS, "mean2": BETA},
        "inner",
    ),
    Model("box5 std^2 + w f sigma^2 (spread)", "std2_box5", {"noise": NOISE_WEIGHTS}, "spread"),
    Model(
        "Birge: (std^2 + w f sigma^2) rho (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,)},
        "spread",
    ),
    Model(
        "(std^2 + w f sigma^2) rho^2g, g fitted (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)},
        "spread",
    ),
    Model(
        "(std^2 + w f sigma^2) rho^2g, g fitted (inner)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.0, 0.125, 0.25, 0.5, 0.75, 1.0)},
        "inner",
    ),
    Model(
        "std^2 + w f sigma^2 + k (1-f)(rho-1) sigma^2 (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "misfit": (0.0, 0.25, 0.5, 1, 2, 4, 8, 16)},
        "spread",
    ),
    Model(
        "std^2 + w f sigma^2 + k (1-f)(rho-1) sigma^2 (inner)",
        "std2",
        {"noise": NOISE_WEIGHTS, "misfit": (0.0, 0.25, 0.5, 1, 2, 4, 8, 16)},
        "inner",
    ),
    Model(
        "Birge, noise weight chosen without it (spread_seq)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,)},
        "spread_seq",
    ),
    Model(
        "Birge tau=1.25 (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,), "tau": (1.25,)},
        "spread",
    ),
    Model(
        "Birge tau=1.5 (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,), "tau": (1.5,)},
        "spread",
    ),
    Model(
        "Birge tau=1.25, noise weight without it (spread_seq)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,), "tau": (1.25,)},
        "spread_seq",
    ),
    Model(
        "Birge tau in {1, 1.25, 1.5, 2} fitted (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (0.5,), "tau": (1.0, 1.25, 1.5, 2.0)},
        "spread",
    ),
    Model(
        "Birge gamma=1 (h x rho) (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "birge": (1.0,)},
        "spread",
    ),
    Model("box3 Birge (spread)", "std2_box3", {"noise": NOISE_WEIGHTS, "birge": (0.5,)}, "spread"),
    Model(
        "pseudo-replica (projection) in place of f sigma^2, Birge tau=1.25 (spread)",
        "std2",
        {"replica_proj": REPLICA_WEIGHTS, "birge": (0.5,), "tau": (1.25,)},
        "spread",
    ),
    Model(
        "pseudo-replica (last DDS step) in place of f sigma^2, Birge tau=1.25 (spread)",
        "std2",
        {"replica_last": REPLICA_WEIGHTS, "birge": (0.5,), "tau": (1.25,)},
        "spread",
    ),
    Model(
        "f sigma^2 and pseudo-replica (projection), Birge tau=1.25 (spread)",
        "std2",
        {"noise": NOISE_WEIGHTS, "replica_proj": REPLICA_WEIGHTS, "birge": (0.5,), "tau": (1.25,)},
        "spread",
    ),
]


def evaluate(model: Model, cases: list[Case]):
    groups = [c.subject for c in cases]
    fk = finite_k_factor(K)
    out = []
    for i, keep in enumerate(_other_groups(groups)):
        w, factor = fit(model, [cases[j] for j in keep])
        c = cases[i]
        r = ratios(c, w, model.base)
        cov = coverage(r, factor * fk)
        width = float(np.mean(factor * fk * np.sqrt(variance(c, w, model.base))))
        out.append((cov, width, w, factor))
    return out


SAMPLE_FREE_NOISE = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SAMPLE_FREE_SIGNAL = (0.0, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)


def sample_free(results: dict, mask_class: str) -> None:
    """A width for K = 1 (one sample, no spread): v = w f sigma^2 + beta box5(|x|^2) from the
    case's first sample alone, (w, beta) by the spread criterion and the factor by empirical mean
    coverage on the other subject, as the models above; prints the held-out coverage."""
    keys = [k for k in results if k.startswith(f"dds|{mask_class}|")]
    cases = []
    for k in keys:
        r = results[k]
        one = {**r, "mean": r["samples"][0], "std": torch.zeros_like(r["std"])}
        c = load(one, k.split("|")[-1])
        c.q["signal"] = c.q["mean2_box5"]
        cases.append(c)
    fk = finite_k_factor(K)
    groups = [c.subject for c in cases]
    covs, fits = [], set()
    for i, keep in enumerate(_other_groups(groups)):
        calibration = [cases[j] for j in keep]
        grid = [
            {"noise": w, "signal": b}
            for w in SAMPLE_FREE_NOISE
            for b in SAMPLE_FREE_SIGNAL
            if w or b
        ]
        w = min(grid, key=lambda g: (round(spread(calibration, g, "std2"), 9), tuple(g.values())))
        f = fit_factor([ratios(c, w, "std2") for c in calibration], [K] * len(calibration))
        covs.append(coverage(ratios(cases[i], w, "std2"), f.factor * fk))
        fits.add(f"noise={w['noise']:g} signal={w['signal']:g}")
    inside = sum(0.93 <= x <= 0.97 for x in covs)
    print(
        f"| {mask_class} | {inside}/{len(covs)} | {min(covs):.3f} | {np.median(covs):.3f} | "
        f"{max(covs):.3f} | {'; '.join(sorted(fits))} |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=Path("/tmp/uncert/dev128.pt"))
    p.add_argument("--masks", nargs="+", default=list(MASKS))
    p.add_argument("--models", nargs="*", type=int, help="indices into MODELS")
    p.add_argument("--stats", action="store_true", help="print per-case statistics and own factors")
    p.add_argument(
        "--sample-free", action="store_true", help="only the K = 1 width from the first sample"
    )
    args = p.parse_args()
    results = torch.load(args.cache, weights_only=True)
    if args.sample_free:
        print("| mask class | in [0.93, 0.97] | min | median | max | weights chosen |")
        print("|---|---|---|---|---|---|")
        for mask_class in args.masks:
            sample_free(results, mask_class)
        return 0
    models = [MODELS[i] for i in args.models] if args.models else MODELS
    fk = finite_k_factor(K)
    for mask_class in args.masks:
        keys = [k for k in results if k.startswith(f"dds|{mask_class}|")]
        cases = [load(results[k], k.split("|")[-1]) for k in keys]
        print(f"\n## {mask_class}")
        if args.stats:
            names = list(cases[0].stats)
            print("| case | own factor (w=0) | " + " | ".join(names) + " |")
            print("|---" * (len(names) + 2) + "|")
            for c in cases:
                own = np.quantile(ratios(c, {}, "std2"), 0.95) / fk
                print(
                    f"| {c.name[:40]} | {own:.3f} | "
                    + " | ".join(f"{c.stats[n]:.4g}" for n in names)
                    + " |"
                )
        print("| model | in [0.93, 0.97] | min | median | max | mean width / mean |mean| |")
        print("|---|---|---|---|---|---|")
        per_case = {}
        for model in models:
            res = evaluate(model, cases)
            cov = [x[0] for x in res]
            per_case[model.label] = res
            rel = np.mean(
                [
                    x[1] / float(np.mean(np.sqrt(c.q["mean2"])))
                    for x, c in zip(res, cases, strict=True)
                ]
            )
            print(
                f"| {model.label} | {sum(0.93 <= x <= 0.97 for x in cov)}/{len(cov)} | "
                f"{min(cov):.3f} | {np.median(cov):.3f} | {max(cov):.3f} | {rel:.3f} |"
            )
        print("\nper case (coverage; weights, factor fitted on the other subject):")
        for model in models:
            res = per_case[model.label]
            print(
                f"- {model.label}: "
                + ", ".join(f"{x[0]:.3f}" for x in res)
                + "  fits: "
                + "; ".join(
                    sorted(
                        {
                            " ".join(f"{k}={v:g}" for k, v in x[2].items()) + f" c={x[3]:.3f}"
                            for x in res
                        }
                    )
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
