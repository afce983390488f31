"""Calibrated posterior standard deviations: a finite-K model and a conformal factor per setting.

The raw std of K posterior samples under-states the error for three reasons: a sample std of K
draws is itself noisy, a fast sampler under-disperses, and the prior does not match unseen anatomy.
The half-width of the nominal 95 % interval is modelled as

    h = factor * finite_k_factor(K) * std_raw,    std = h / Z_NOMINAL   (mean +- 2 std is the interval)

``finite_k_factor(K) = sqrt((K + 1) / K) * t_{0.975, K-1}`` is exact for an exact Gaussian posterior
sampled K times (a fresh draw against the mean and std of K draws is a scaled Student t), so one
``factor`` carries over between K; ``factor`` absorbs the rest (sampler, prior mismatch) and is
fitted per :class:`Setting` on held-out cases by split-conformal risk control (Angelopoulos et al.
2022, "Conformal risk control"; their image-to-image regression paper calibrates an interval
width the same way): the loss of a case is the fraction of its object pixels outside the interval,
so the guarantee is on the per-image coverage, not on pixels pooled as if independent.

Scores use the rule of the benchmark: magnitudes, |mean| scaled by the least-squares scalar ``a``
fitting it to |ref|, and ``a std``; object pixels are those above 10 % of max |ref|.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from diffusion_core.metrics import object_region

log = logging.getLogger(__name__)

ALPHA = 0.05
Z_NOMINAL = 2.0
CRC = "conformal risk control"
EMPIRICAL = "empirical mean coverage"


def finite_k_factor(k: int, alpha: float = ALPHA) -> float:
    """sqrt((K+1)/K) t_{1-alpha/2, K-1}: the multiple of the std of K Gaussian draws within which
    a fresh draw from the same Gaussian lies around their mean with probability 1 - alpha."""
    if k < 2:
        raise ValueError(f"num_samples: a std needs K >= 2 samples, got {k}")
    from scipy.stats import t

    return math.sqrt((k + 1) / k) * float(t.ppf(1.0 - alpha / 2.0, k - 1))


def acceleration_class(mask: torch.Tensor) -> int:
    """The power of two nearest to the acceleration R = entries / sampled entries of mask (ky, kx)."""
    sampled = float((mask != 0).sum())
    if sampled == 0:
        raise ValueError("mask: has no sampled entries; expected an undersampling mask")
    return max(1, 2 ** round(math.log2(mask.numel() / sampled)))


@dataclass(frozen=True)
class Setting:
    """What a calibration is valid for: sampler, NFE, samples K, CG iterations, acceleration class."""

    sampler: str
    nfe: int
    num_samples: int
    cg_iters: int
    acceleration: int

    def distance(self, other: Setting) -> float:
        """inf across samplers; else the summed |log2| ratios of NFE, CG iterations, acceleration
        (K does not count: the finite-K model carries the factor over)."""
        if self.sampler != other.sampler:
            return math.inf
        pairs = (
            (self.nfe, other.nfe),
            (self.cg_iters, other.cg_iters),
            (self.acceleration, other.acceleration),
        )
        return sum(abs(math.log2(a / b)) for a, b in pairs)

    def label(self) -> str:
        return (
            f"{self.sampler} nfe={self.nfe} K={self.num_samples} cg_iters={self.cg_iters} "
            f"R~{self.acceleration}"
        )


@dataclass(frozen=True)
class CalibrationEntry:
    """One fitted factor and what it was fitted on (stored in the model card)."""

    setting: Setting
    factor: float
    method: str
    cases: int
    data: str
    coverage_before: float
    coverage_after: float
    alpha: float = ALPHA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationEntry:
        try:
            fields = {**d, "setting": Setting(**d["setting"])}
            entry = cls(**fields)
        except (TypeError, KeyError) as err:
            raise ValueError(f"calibration entry {d!r}: malformed ({err})") from err
        if not (entry.factor > 0 and math.isfinite(entry.factor)):
            raise ValueError(f"calibration entry {entry.setting.label()}: factor {entry.factor}")
        return entry


@dataclass(frozen=True)
class CalibratedStd:
    """The std a reader gets: calibrated (mean +- 2 std = nominal 95 %) or raw, labelled."""

    std: torch.Tensor
    calibrated: bool
    factor: float
    data: str
    note: str


def lookup(entries: tuple[CalibrationEntry, ...], want: Setting) -> CalibrationEntry | None:
    """The entry nearest to ``want`` (:meth:`Setting.distance`), or None if none shares its sampler."""
    best = min(
        entries,
        key=lambda e: (
            e.setting.distance(want),
            abs(math.log2(e.setting.num_samples / want.num_samples)),
        ),
        default=None,
    )
    if best is None or math.isinf(best.setting.distance(want)):
        return None
    return best


def calibrate_std(
    std_raw: torch.Tensor, want: Setting, entries: tuple[CalibrationEntry, ...]
) -> CalibratedStd:
    """Apply the nearest calibration to a raw std (K = want.num_samples >= 2); say what was done."""
    entry = lookup(entries, want)
    if entry is None:
        note = f"uncalibrated: no calibration for sampler {want.sampler!r} in the model card"
        log.warning("std: %s (raw posterior std sent)", note)
        return CalibratedStd(std_raw, False, 1.0, "", note)
    factor = entry.factor * finite_k_factor(want.num_samples, entry.alpha) / Z_NOMINAL
    if entry.setting.distance(want) == 0:
        note = f"calibrated for {entry.setting.label()}"
        if entry.setting.num_samples != want.num_samples:
            note += f" (K={want.num_samples} by the finite-K model)"
    else:
        note = f"nearest calibration {entry.setting.label()} used for {want.label()}"
        log.warning("std: %s", note)
    return CalibratedStd(std_raw * factor, True, factor, entry.data, note)


def pixel_ratios(
    ref: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, support: torch.Tensor | None = None
) -> np.ndarray:
    """| a|mean| - |ref| | / (a std) on the object pixels of ref (y, x): float64 (n,), inf where
    std = 0 and the error is not. ``support`` (y, x) bool: score only the object pixels inside it
    (the reconstruction's support; outside it mean and std are zero by design and the images'
    meta say the region was masked)."""
    r, m, s = (t.detach().cpu().abs().double().numpy() for t in (ref, mean, std))
    a = float((m * r).sum() / max(float((m * m).sum()), 1e-30))
    inside = object_region(r)
    if support is not None:
        inside = inside & support.detach().cpu().numpy().astype(bool)
    err, width = np.abs(a * m - r)[inside], (a * s)[inside]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(
            width > 0, err / np.where(width > 0, width, 1.0), np.where(err > 0, np.inf, 0)
        )
    return out


def coverage(ratios: np.ndarray, half_width: float) -> float:
    """Fraction of pixels whose ratio is within ``half_width``."""
    return float(np.mean(ratios <= half_width))


@dataclass(frozen=True)
class Fit:
    factor: float
    method: str
    mean_coverage: float


def fit_factor(ratio_sets: list[np.ndarray], ks: list[int], alpha: float = ALPHA) -> Fit:
    """Smallest factor whose intervals (factor * finite_k_factor(K) * std) keep the mean over cases of
    the per-case miscoverage L_i within the conformal risk control bound (n R_n + 1) / (n + 1) <= alpha.

    That bound guarantees E[coverage of a new exchangeable case] >= 1 - alpha. It needs
    n >= 1/alpha - 1 cases (19 at 95 %); with fewer, the factor makes the mean per-case coverage of
    the calibration cases 1 - alpha, without a finite-sample guarantee, and ``method`` says so.
    """
    n = len(ratio_sets)
    if n == 0 or n != len(ks):
        raise ValueError(
            f"ratio_sets, ks: expected one K per case and >= 1 case, got {n}, {len(ks)}"
        )
    if any(r.size == 0 for r in ratio_sets):
        raise ValueError("ratio_sets: a case has no object pixels to score")
    target = 1.0 - ((n + 1) * alpha - 1.0) / n
    method = CRC
    if target > 1.0:
        target, method = 1.0 - alpha, EMPIRICAL
    units = [r / finite_k_factor(k, alpha) for r, k in zip(ratio_sets, ks, strict=True)]
    values = np.concatenate(units)
    weights = np.concatenate([np.full(u.size, 1.0 / (n * u.size)) for u in units])
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    index = int(np.searchsorted(cum, target - 1e-12))
    factor = float(values[order][min(index, values.size - 1)])
    if not math.isfinite(factor):
        raise ValueError("ratio_sets: the target coverage needs an infinite factor (std = 0)")
    factor = max(factor, 1e-12)
    achieved = float(np.mean([np.mean(u <= factor) for u in units]))
    return Fit(factor, method, achieved)


def leave_one_out(
    ratio_sets: list[np.ndarray], ks: list[int], groups: list[str], alpha: float = ALPHA
) -> list[Fit]:
    """For each case, the fit on the cases of every other group (subject): never on itself."""
    fits = []
    for g in groups:
        keep = [i for i, h in enumerate(groups) if h != g]
        if not keep:
            raise ValueError(f"leave-one-out: group {g!r} is the only one; need >= 2 subjects")
        fits.append(fit_factor([ratio_sets[i] for i in keep], [ks[i] for i in keep], alpha))
    return fits


MODEL = (
    "std = factor * finite_k_factor(K) * std_raw / 2 with finite_k_factor(K) = sqrt((K+1)/K) "
    "t_{0.975,K-1} (diffusion_core.uncertainty); mean +- 2 std is the nominal 95 % interval of "
    "| a|mean| - |x| | on object pixels"
)


def calibration_block(entries: tuple[CalibrationEntry, ...]) -> dict[str, Any]:
    """The model card's ``calibration`` block."""
    return {"model": MODEL, "entries": [e.to_dict() for e in entries]}


def entries_from_card(card: dict[str, Any]) -> tuple[CalibrationEntry, ...]:
    """The calibration entries of a model card (empty when it has none)."""
    block = card.get("calibration") or {}
    return tuple(CalibrationEntry.from_dict(d) for d in block.get("entries", []))


def merged(
    old: tuple[CalibrationEntry, ...], new: tuple[CalibrationEntry, ...]
) -> tuple[CalibrationEntry, ...]:
    """``old`` with entries of the same setting replaced by ``new``."""
    replaced = {e.setting for e in new}
    return tuple(e for e in old if e.setting not in replaced) + new
