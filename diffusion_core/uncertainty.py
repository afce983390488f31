"""Calibrated posterior standard deviations: a finite-K model, a noise term, a conformal factor.

The raw std of K posterior samples under-states the error for three reasons: a sample std of K
draws is itself noisy, a fast sampler under-disperses (DDS keeps the measured, noisy k-space
values in every sample, so the measurement noise the mean carries is not in their spread), and
the prior does not match unseen anatomy. The half-width of the nominal 95 % interval is modelled as

    h = factor * finite_k_factor(K) * sqrt(std_raw^2 + noise_weight * f * sigma^2)
    std = h / Z_NOMINAL   (mean +- 2 std is the interval)

``finite_k_factor(K) = sqrt((K + 1) / K) * t_{0.975, K-1}`` is exact for an exact Gaussian posterior
sampled K times (a fresh draw against the mean and std of K draws is a scaled Student t), so one
``factor`` carries over between K. ``f sigma^2`` is the variance per real channel that white
measurement noise (sigma per real channel, orthonormal FFT, unit-RSS coil maps) leaves in an image
made from the sampled fraction f of k-space: the noise the mean keeps and the samples do not
spread; ``noise_weight`` (0 in cards written before it existed: the factor-only model) says how
much of it the error shows. ``factor`` absorbs the rest (sampler, prior mismatch) and is fitted per
:class:`Setting` on held-out cases by split-conformal risk control (Angelopoulos et al. 2022,
"Conformal risk control"; their image-to-image regression paper calibrates an interval width the
same way): the loss of a case is the fraction of its object pixels outside the interval, so the
guarantee is on the per-image coverage, not on pixels pooled as if independent. ``noise_weight``
is chosen on the same cases, from a short grid, as the one that makes the cases' own 95 % factors
most alike (the spread that a single factor cannot remove).

Optionally (``residual_exponent`` gamma, 0 in cards written before it existed) the half-width is
inflated by the data misfit of the mean, measured at reconstruction time from the data alone:

    h = factor * finite_k_factor(K) * sqrt(std_raw^2 + noise_weight * f * sigma^2) * max(rho / tau, 1)^gamma
    rho = mean over sampled entries and coils of |M F S mean - y|^2 / (2 sigma^2)

(:func:`data_residual_ratio`: the reduced chi-square of the mean against the measured k-space;
about 1 when the forward model and the noise level explain the data). gamma = 1/2 is the Birge
ratio, the usual inflation of uncertainties by sqrt(reduced chi-square) when the data disagree
with the model by more than the noise: a mean that cannot fit the sampled data (coil maps, prior
or noise model mismatched) errs off them too by more than the samples' spread says. The tolerance
tau (``residual_tolerance``; :data:`BIRGE_TOLERANCE` = 1.25, set by hand, not fitted) leaves alone
the misfits within what the noise estimate and the mean's partial fit of the noise give (rho
0.76-1.13 on the 26 of 30 development cases that fit the data). It removes the subject offset
at R = 8 1D and leaves R = 4 and Poisson unchanged (benchmarks/results/uncertainty_model_search.md).

With K = 1 there is no spread of samples. On request (``ReconConfig.linear_width``) the width
is then :func:`linear_posterior_std`, the standard deviation of the linear-Gaussian posterior
(a white prior of EDM's sigma_data on the support, the measured noise): it knows the mask, the
coils and the noise of the scan, not the prior's bias, which the factor (fitted on K = 1
cases, :func:`interval_multiplier` z_{0.975} in place of the finite-K factor) carries. Its
entries have K = 1 and are never used for K >= 2 or the other way round.

Scores use the rule of the benchmark: magnitudes, |mean| scaled by the least-squares scalar ``a``
fitting it to |ref|, and ``a std``; object pixels are those above 10 % of max |ref|.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from diffusion_core.data_consistency import SenseDataConsistency
from diffusion_core.metrics import object_region
from diffusion_core.noise import complex_noise

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


def interval_multiplier(k: int, alpha: float = ALPHA) -> float:
    """The multiple of the width whose interval holds a fresh draw with probability 1 - alpha:
    :func:`finite_k_factor` for the std of K >= 2 samples; for K = 1 the width is the
    :func:`linear_posterior_std` (a model's standard deviation, not an estimate from draws), so
    the normal quantile z_{1-alpha/2}."""
    if k == 1:
        from scipy.stats import norm

        return float(norm.ppf(1.0 - alpha / 2.0))
    return finite_k_factor(k, alpha)


# the prior standard deviation per real channel of the linear-Gaussian width, in the prior's
# scale (images over their 99th-percentile magnitude). It sets how far the width rises where the
# data leave pixels unresolved against where they determine them; the factor sets the scale.
# Chosen among 0.05 / 0.15 / 0.5 (0.5: EDM's sigma_data) on the calibration subjects at 128, by
# the cases in [0.93, 0.97] held out by subject: 15 / 15 / 13 of 30, Poisson's minimum 0.870 /
# 0.879 / 0.809 (benchmarks/results/uncertainty_linear_width.md)
LINEAR_PRIOR_STD = 0.15
# its probes (perturbed solves) and their CG iterations: the variance of 16 probes is within
# 1/sqrt(16) = 25 % per pixel (12 % in the width)
LINEAR_PROBES = 16
LINEAR_CG_ITERS = 30
# the seed of those probes in ``reconstruct`` (a generator of their own)
LINEAR_SEED = 20260


def linear_posterior_std(
    dc: SenseDataConsistency,
    prior_std: float = LINEAR_PRIOR_STD,
    probes: int = LINEAR_PROBES,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(y, x) sqrt(E|d|^2) of the linear-Gaussian posterior of ``dc``'s measurement: a white
    prior of ``prior_std`` per real channel on its support, the measurement's own noise; what
    K = 1 can say about the spread without more samples (the width that a single sample's
    mean needs: like a SENSE g-factor noise map, it is large where the coils and the mask leave
    pixels unresolved, up to the prior's spread where the data say nothing).

    By perturb-and-MAP (Papandreou and Yuille 2010): for z ~ N(0, prior_std^2) on the image
    and e ~ N(0, sigma^2) on the sampled entries, d = argmin ||d - z||^2 / 2 + w / 2 ||A d - e||^2
    with w = prior_std^2 / sigma^2 is an exact draw of the posterior's deviation from its mean
    (covariance (A^H A / sigma^2 + I / prior_std^2)^-1 per real channel), solved with ``dc``'s
    CG iterations; the width is the root of the mean of |d|^2 over ``probes`` draws (zero
    outside the support)."""
    if probes < 1 or not prior_std > 0:
        raise ValueError(f"probes, prior_std: expected >= 1 and > 0, got {probes}, {prior_std}")
    like = torch.zeros((probes, *dc.support.shape), dtype=dc.y.dtype, device=dc.y.device)
    z = prior_std * complex_noise(like, generator)
    e = dc.noise_sigma * dc.mask * complex_noise(dc.y.expand(probes, *dc.y.shape), generator)
    d = dc.prox(z, dc.weight(prior_std**2), e)
    return d.abs().square().mean(0).sqrt() * dc.support


def acceleration_class(mask: torch.Tensor) -> int:
    """The power of two nearest to the acceleration R = entries / sampled entries of mask (ky, kx)."""
    sampled = float((mask != 0).sum())
    if sampled == 0:
        raise ValueError("mask: has no sampled entries; expected an undersampling mask")
    return max(1, 2 ** round(math.log2(mask.numel() / sampled)))


def mask_sampling(mask: torch.Tensor) -> str:
    """``"1d"`` if mask (ky, kx) samples along lines (:func:`diffusion_core.masks.phase_encode_axis`:
    readouts, also with an asymmetric echo or calibration lines longer than the rest), else
    ``"2d"``: at the same R the two alias differently (coherent folds against incoherent noise),
    so their std calibrations differ."""
    from diffusion_core.masks import phase_encode_axis

    return "2d" if phase_encode_axis(mask) is None else "1d"


# what an entry written before the sampling dimension was recorded matches: either, at a cost
UNRECORDED = ""
# the same for the matrix dimension
UNRECORDED_MATRIX = 0


def matrix_size(mask: torch.Tensor) -> int:
    """sqrt(ny * nx) of the reconstruction grid (the mask's last two axes), rounded: how many
    pixels the image spans across. The prior sees anatomy in pixels, so the same head on a coarser
    grid is further from what it learnt, and the std needs a larger factor (fitted at 96 / 128 /
    192: R=4 1D 1.88 / 1.74 / 1.50, R=8 1D 2.79 / 2.10 / 1.82; benchmarks/results/uncertainty_matrix.md)."""
    ny, nx = mask.shape[-2], mask.shape[-1]
    return max(1, round(math.sqrt(ny * nx)))


@dataclass(frozen=True)
class Setting:
    """What a calibration is valid for: sampler, NFE, samples K, CG iterations, acceleration class,
    ``sampling`` (:func:`mask_sampling`; :data:`UNRECORDED` in cards written before it was) and
    ``matrix`` (:func:`matrix_size` of the calibration images; :data:`UNRECORDED_MATRIX` in cards
    written before it was)."""

    sampler: str
    nfe: int
    num_samples: int
    cg_iters: int
    acceleration: int
    sampling: str = UNRECORDED
    matrix: int = UNRECORDED_MATRIX

    def distance(self, other: Setting) -> float:
        """inf across samplers and between K = 1 (the linear-Gaussian width) and K >= 2 (the
        samples' std); else the summed |log2| ratios of NFE, CG iterations, acceleration,
        plus 1 (a factor 2 in R) for 1D against 2D sampling and 0.5 where one side did not record
        it, plus the |log2| ratio of the matrices (0.5 where one side did not record it) (K does
        not count: the finite-K model carries the factor over)."""
        if self.sampler != other.sampler or (self.num_samples == 1) != (other.num_samples == 1):
            return math.inf
        pairs = (
            (self.nfe, other.nfe),
            (self.cg_iters, other.cg_iters),
            (self.acceleration, other.acceleration),
        )
        if self.sampling == other.sampling:
            dims = 0.0
        elif UNRECORDED in (self.sampling, other.sampling):
            dims = 0.5
        else:
            dims = 1.0
        if UNRECORDED_MATRIX in (self.matrix, other.matrix):
            dims += 0.0 if self.matrix == other.matrix else 0.5
        else:
            dims += abs(math.log2(self.matrix / other.matrix))
        return dims + sum(abs(math.log2(a / b)) for a, b in pairs)

    def label(self) -> str:
        dims = f" {self.sampling.upper()}" if self.sampling != UNRECORDED else ""
        if self.matrix != UNRECORDED_MATRIX:
            dims += f" matrix~{self.matrix}"
        k = "1 (linear-Gaussian width)" if self.num_samples == 1 else str(self.num_samples)
        return (
            f"{self.sampler} nfe={self.nfe} K={k} cg_iters={self.cg_iters} "
            f"R~{self.acceleration}{dims}"
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
    noise_weight: float = 0.0
    residual_exponent: float = 0.0
    residual_tolerance: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationEntry:
        try:
            fields = {**d, "setting": Setting(**d["setting"])}
            entry = cls(**fields)
        except (TypeError, KeyError) as err:
            raise ValueError(f"calibration entry {d!r}: malformed ({err})") from err
        matrix = entry.setting.matrix
        if isinstance(matrix, bool) or not isinstance(matrix, int) or matrix < 0:
            raise ValueError(
                f"calibration entry {d.get('setting')!r}: matrix {matrix!r}, expected a whole "
                f"number of pixels > 0 (or {UNRECORDED_MATRIX}: not recorded)"
            )
        if not (entry.factor > 0 and math.isfinite(entry.factor)):
            raise ValueError(f"calibration entry {entry.setting.label()}: factor {entry.factor}")
        if not (entry.noise_weight >= 0 and math.isfinite(entry.noise_weight)):
            raise ValueError(
                f"calibration entry {entry.setting.label()}: noise_weight {entry.noise_weight}, "
                "expected a finite value >= 0"
            )
        if not (entry.residual_exponent >= 0 and math.isfinite(entry.residual_exponent)):
            raise ValueError(
                f"calibration entry {entry.setting.label()}: residual_exponent "
                f"{entry.residual_exponent}, expected a finite value >= 0"
            )
        if not (entry.residual_tolerance > 0 and math.isfinite(entry.residual_tolerance)):
            raise ValueError(
                f"calibration entry {entry.setting.label()}: residual_tolerance "
                f"{entry.residual_tolerance}, expected a finite value > 0"
            )
        return entry


@dataclass(frozen=True)
class CalibratedStd:
    """The std a reader gets: calibrated (mean +- 2 std = nominal 95 %) or raw, labelled."""

    std: torch.Tensor
    calibrated: bool
    factor: float
    data: str
    note: str


def _tie_break(setting: Setting, want: Setting) -> tuple[float, float, float, str]:
    """Among entries at one :meth:`Setting.distance`: the nearer K, then the nearer acceleration
    (R sets which pixels alias, the CG iterations only how much the data are trusted: on the
    shipped card a class-2 entry at 5 iterations is the better stand-in for class 2 at 10, whose
    factor the class-4 trends put at 1.80 against 1.885 / 1.689 for the two candidates at
    distance 1), then the nearer CG iterations, then the label: the choice never depends on the
    order of the card's entries."""
    return (
        abs(math.log2(setting.num_samples / want.num_samples)),
        abs(math.log2(setting.acceleration / want.acceleration)),
        abs(math.log2(setting.cg_iters / want.cg_iters)),
        setting.label(),
    )


def lookup(entries: tuple[CalibrationEntry, ...], want: Setting) -> CalibrationEntry | None:
    """The entry nearest to ``want`` (:meth:`Setting.distance`; ties: :func:`_tie_break`), or None
    if none shares its sampler."""
    best = min(
        entries,
        key=lambda e: (round(e.setting.distance(want), 9), *_tie_break(e.setting, want)),
        default=None,
    )
    if best is None or math.isinf(best.setting.distance(want)):
        return None
    return best


def calibrate_std(
    std_raw: torch.Tensor,
    want: Setting,
    entries: tuple[CalibrationEntry, ...],
    noise_var: float | torch.Tensor = 0.0,
    residual_ratio: float = 1.0,
) -> CalibratedStd:
    """Apply the nearest calibration to a raw std (K = want.num_samples >= 2); say what was done.
    ``noise_var``: f sigma^2 in the units of std_raw squared (the module docstring), a number or
    a map like std_raw (0 where nothing is reconstructed); ``factor`` of the result is the
    multiplier of sqrt(std_raw^2 + noise_weight * noise_var). ``residual_ratio``: rho of
    :func:`data_residual_ratio`; entries with a residual_exponent gamma > 0 multiply the std by
    max(rho / residual_tolerance, 1)^gamma (``factor`` of the result does not include it)."""
    entry = lookup(entries, want)
    if entry is None:
        note = f"uncalibrated: no calibration for sampler {want.sampler!r} in the model card"
        log.warning("std: %s (raw posterior std sent)", note)
        return CalibratedStd(std_raw, False, 1.0, "", note)
    factor = entry.factor * interval_multiplier(want.num_samples, entry.alpha) / Z_NOMINAL
    if entry.setting.distance(want) == 0:
        note = f"calibrated for {entry.setting.label()}"
        if entry.setting.num_samples != want.num_samples:
            note += f" (K={want.num_samples} by the finite-K model)"
    else:
        note = f"nearest calibration {entry.setting.label()} used for {want.label()}"
        log.warning("std: %s", note)
    if entry.noise_weight > 0:
        note += f" (with measurement-noise term, noise_weight {entry.noise_weight:g})"
        spread = (std_raw.square() + entry.noise_weight * noise_var).sqrt()
    else:
        spread = std_raw
    if entry.residual_exponent > 0:
        inflation = residual_inflation(
            residual_ratio, entry.residual_exponent, entry.residual_tolerance
        )
        note += (
            f" (data-misfit inflation max(rho / {entry.residual_tolerance:g}, 1)^"
            f"{entry.residual_exponent:g} = {inflation:.3f}, rho {residual_ratio:.3f})"
        )
        spread = spread * inflation
    return CalibratedStd(spread * factor, True, factor, entry.data, note)


def residual_inflation(residual_ratio: float, exponent: float, tolerance: float = 1.0) -> float:
    """max(rho / tau, 1)^gamma: 1 where the mean fits the data within tau times the noise (or
    gamma = 0)."""
    if not math.isfinite(residual_ratio):
        raise ValueError(f"residual_ratio: expected a finite value, got {residual_ratio}")
    return max(residual_ratio / tolerance, 1.0) ** exponent if exponent else 1.0


def data_residual_ratio(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    maps: torch.Tensor,
    image: torch.Tensor,
    noise_sigma: float,
) -> float:
    """rho = mean over the sampled entries and coils of |fft2c(maps * image) - kspace|^2 / (2
    noise_sigma^2): the reduced chi-square of ``image`` (y, x) against the measured ``kspace``
    (coils, ky, kx) through ``maps`` (coils, y, x), sigma per real channel in the units of kspace."""
    from diffusion_core.fft import fft2c

    if not noise_sigma > 0:
        raise ValueError(f"noise_sigma: expected > 0, got {noise_sigma}")
    sampled = mask != 0
    res = (fft2c(maps * image) - kspace)[:, sampled]
    return float(res.abs().square().double().mean() / (2.0 * noise_sigma**2))


@dataclass(frozen=True)
class CaseScores:
    """One case's object pixels: ``error`` = | a|mean| - |ref| | / a and ``std`` (both (n,)
    float64, in the units of the std), and ``noise_var`` = f sigma^2 of its measurement."""

    error: np.ndarray
    std: np.ndarray
    noise_var: float = 0.0
    residual_ratio: float = 1.0

    def ratios(
        self,
        noise_weight: float = 0.0,
        residual_exponent: float = 0.0,
        residual_tolerance: float = 1.0,
    ) -> np.ndarray:
        """error / (sqrt(std^2 + noise_weight noise_var) :func:`residual_inflation`); inf where
        that is 0 and the error not."""
        width = np.sqrt(self.std**2 + noise_weight * self.noise_var) * residual_inflation(
            self.residual_ratio, residual_exponent, residual_tolerance
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(
                width > 0,
                self.error / np.where(width > 0, width, 1.0),
                np.where(self.error > 0, np.inf, 0.0),
            )


def case_scores(
    ref: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    support: torch.Tensor | None = None,
    noise_var: float = 0.0,
    residual_ratio: float = 1.0,
) -> CaseScores:
    """The :class:`CaseScores` of ref, mean (complex or magnitude) and std (y, x) on the object
    pixels of ref, inside ``support`` (y, x) bool if given (the reconstruction's support; outside
    it mean and std are zero by design and the images' meta say the region was masked)."""
    r, m, s = (t.detach().cpu().abs().double().numpy() for t in (ref, mean, std))
    a = float((m * r).sum() / max(float((m * m).sum()), 1e-30))
    inside = object_region(r)
    if support is not None:
        inside = inside & support.detach().cpu().numpy().astype(bool)
    a = max(a, 1e-30)
    return CaseScores((np.abs(a * m - r) / a)[inside], s[inside], noise_var, residual_ratio)


def pixel_ratios(
    ref: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, support: torch.Tensor | None = None
) -> np.ndarray:
    """| a|mean| - |ref| | / (a std) on the object pixels of ref (y, x) (inside ``support``):
    float64 (n,), inf where std = 0 and the error is not (:func:`case_scores`)."""
    return case_scores(ref, mean, std, support).ratios()


def coverage(ratios: np.ndarray, half_width: float) -> float:
    """Fraction of pixels whose ratio is within ``half_width``."""
    return float(np.mean(ratios <= half_width))


@dataclass(frozen=True)
class Fit:
    factor: float
    method: str
    mean_coverage: float
    noise_weight: float = 0.0
    residual_exponent: float = 0.0
    residual_tolerance: float = 1.0


def fit_factor(
    ratio_sets: list[np.ndarray], ks: list[int], alpha: float = ALPHA, guarantee: bool = True
) -> Fit:
    """Smallest factor whose intervals (factor * interval_multiplier(K) * std) keep the mean over cases of
    the per-case miscoverage L_i within the conformal risk control bound (n R_n + 1) / (n + 1) <= alpha.

    That bound guarantees E[coverage of a new exchangeable case] >= 1 - alpha. It needs
    n >= 1/alpha - 1 cases (19 at 95 %); with fewer, or with ``guarantee`` False, the factor makes
    the mean per-case coverage of the calibration cases 1 - alpha, without a finite-sample
    guarantee, and ``method`` says so. The bound takes a case's loss as up to 1 (every pixel
    outside): at n = 24 it asks a mean coverage of 0.990 of the calibration cases, so a fit that
    should put each case near 1 - alpha rather than above it on average has ``guarantee`` False.
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
    if target > 1.0 or not guarantee:
        target, method = 1.0 - alpha, EMPIRICAL
    units = [r / interval_multiplier(k, alpha) for r, k in zip(ratio_sets, ks, strict=True)]
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
    ratio_sets: list[np.ndarray],
    ks: list[int],
    groups: list[str],
    alpha: float = ALPHA,
    guarantee: bool = True,
) -> list[Fit]:
    """For each case, the fit on the cases of every other group (subject): never on itself."""
    return [
        fit_factor([ratio_sets[i] for i in keep], [ks[i] for i in keep], alpha, guarantee)
        for keep in _other_groups(groups)
    ]


def _other_groups(groups: list[str]) -> list[list[int]]:
    """Per case, the indices of the cases of every other group (ValueError if there are none)."""
    kept = []
    for g in groups:
        keep = [i for i, h in enumerate(groups) if h != g]
        if not keep:
            raise ValueError(f"leave-one-out: group {g!r} is the only one; need >= 2 subjects")
        kept.append(keep)
    return kept


# the noise weights fit_model chooses among: none, and 1/8 to 2 of the noise the mean keeps
NOISE_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)


# the residual exponent of the Birge ratio (the module docstring); (0.0,): the model without it
BIRGE = 0.5
# the misfit tau that the Birge inflation tolerates: above the rho of the development cases that
# fit the data (0.76-1.13), set by hand (benchmarks/results/uncertainty_model_search.md)
BIRGE_TOLERANCE = 1.25


def case_factor_spread(
    cases: list[CaseScores],
    noise_weight: float,
    alpha: float = ALPHA,
    residual_exponent: float = 0.0,
    residual_tolerance: float = 1.0,
) -> float:
    """Std over cases of log(own 1 - alpha quantile of the ratios): 0 when one factor gives every
    case the same coverage; what :func:`fit_model` makes small."""
    return float(
        np.std(
            [
                np.log(
                    np.quantile(
                        c.ratios(noise_weight, residual_exponent, residual_tolerance), 1 - alpha
                    )
                )
                for c in cases
            ]
        )
    )


def fit_model(
    cases: list[CaseScores],
    ks: list[int],
    alpha: float = ALPHA,
    noise_weights: tuple[float, ...] = NOISE_WEIGHTS,
    residual_exponents: tuple[float, ...] = (0.0,),
    residual_tolerance: float = 1.0,
    guarantee: bool = True,
) -> Fit:
    """The pair (noise weight of ``noise_weights``, residual exponent of ``residual_exponents``)
    with the least :func:`case_factor_spread` (ties: the smaller exponent, then the smaller
    weight), then the factor on its ratios by :func:`fit_factor`. One case, or cases all without
    noise, keep noise weight 0 (nothing to choose a weight from); one case keeps the first
    exponent given. ``residual_exponents=(BIRGE,)``, ``residual_tolerance=BIRGE_TOLERANCE``: the
    Birge-ratio inflation of the module docstring (the tolerance is given, not fitted).
    ``guarantee``: as :func:`fit_factor`'s."""
    several = len(cases) > 1
    weights = noise_weights if several and any(c.noise_var > 0 for c in cases) else (0.0,)
    exponents = residual_exponents if several else residual_exponents[:1]
    _, gamma, best = min(
        (round(case_factor_spread(cases, w, alpha, g, residual_tolerance), 9), g, w)
        for g in exponents
        for w in weights
    )
    fit = fit_factor(
        [c.ratios(best, gamma, residual_tolerance) for c in cases], ks, alpha, guarantee
    )
    tolerance = residual_tolerance if gamma else 1.0
    return Fit(fit.factor, fit.method, fit.mean_coverage, best, gamma, tolerance)


def leave_one_out_model(
    cases: list[CaseScores],
    ks: list[int],
    groups: list[str],
    alpha: float = ALPHA,
    residual_exponents: tuple[float, ...] = (0.0,),
    residual_tolerance: float = 1.0,
    guarantee: bool = True,
) -> list[Fit]:
    """For each case, :func:`fit_model` on the cases of every other group (subject)."""
    return [
        fit_model(
            [cases[i] for i in keep],
            [ks[i] for i in keep],
            alpha,
            residual_exponents=residual_exponents,
            residual_tolerance=residual_tolerance,
            guarantee=guarantee,
        )
        for keep in _other_groups(groups)
    ]


MODEL = (
    "std = factor * finite_k_factor(K) * sqrt(std_raw^2 + noise_weight * f * sigma^2) / 2 with "
    "finite_k_factor(K) = sqrt((K+1)/K) t_{0.975,K-1}, f the sampled fraction of k-space, sigma "
    "the measurement noise per real channel in image units (f sigma^2: the noise the mean keeps "
    "from the sampled data, absent from the spread of the samples; noise_weight 0 or missing: "
    "std = factor * finite_k_factor(K) * std_raw / 2), times max(rho / residual_tolerance, 1)^residual_exponent where "
    "residual_exponent > 0 (rho: mean |M F S mean - y|^2 / (2 sigma^2) over the sampled entries, "
    "the data misfit of the mean; 1/2: the Birge ratio) (diffusion_core.uncertainty); mean +- 2 std "
    "is the nominal 95 % interval of | a|mean| - |x| | on object pixels"
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
    """``old`` with entries of the same setting replaced by ``new``; an old entry that did not
    record its sampling or its matrix is replaced by a new one that matches it in everything else."""
    replaced = {
        replace(e.setting, **blank)
        for e in new
        for blank in (
            {},
            {"sampling": UNRECORDED},
            {"matrix": UNRECORDED_MATRIX},
            {"sampling": UNRECORDED, "matrix": UNRECORDED_MATRIX},
        )
    }
    return tuple(e for e in old if e.setting not in replaced) + new
