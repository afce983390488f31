"""One entry point: multi-coil k-space and mask in, posterior mean, standard deviation and samples out.

Steps: prewhiten (if a noise covariance is given) -> coil maps (ESPIRiT from the calibration region
of the mask, if not given) -> the support, the pixels a coil sees (outside it the data say nothing
and the result is zero by design, :mod:`diffusion_core.data_consistency`) -> a CG-SENSE estimate whose 99th magnitude percentile sets the scale
(the rule shared with training, :mod:`diffusion_core.normalization`) -> for a line mask, the CG
iterations by where that estimate puts the object (``ReconConfig.cg_iters_inside`` /
``cg_iters_cut``, :func:`fov_place`) -> K posterior samples with the chosen sampler in that scale
-> mean and per-pixel standard deviation, scaled back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from diffusion_core import schedules
from diffusion_core.classical import cg_sense
from diffusion_core.data_consistency import (
    CoilDataConsistency,
    DataConsistency,
    SenseDataConsistency,
    image_support,
)
from diffusion_core.denoiser import Denoiser
from diffusion_core.masks import phase_encode_axis, regular_spacing
from diffusion_core.noise import complex_noise
from diffusion_core.normalization import magnitude_scale
from diffusion_core.samplers import (
    SamplerStep,
    sample_dds,
    sample_dps,
    sample_langevin,
    sample_score_mri,
    sample_song2022,
)
from diffusion_core.uncertainty import (
    LINEAR_CG_ITERS,
    LINEAR_SEED,
    CalibratedStd,
    CalibrationEntry,
    Setting,
    acceleration_class,
    calibrate_std,
    data_residual_ratio,
    linear_posterior_std,
    mask_sampling,
    matrix_size,
)
from diffusion_core.validation import require_complex, require_finite

log = logging.getLogger(__name__)

SAMPLERS = ("dds", "song", "score_mri", "score_mri_ssos", "dps", "langevin")
SCHEDULES = ("karras", "ve_geometric", "vp_linear", "vp_cosine")


@dataclass(frozen=True)
class ReconConfig:
    """How to reconstruct. ``nfe``: network evaluations per sample (predictor-corrector samplers
    spend 1 + ``corrector_steps`` per level). ``noise_sigma``: measurement noise per real channel
    in the prior's scale; ``None`` = from the noise covariance if given, else estimated from the
    k-space corners. ``batch_size``: samples drawn together (``None``: all K on a GPU, one at a time
    on the CPU, where batching does not pay for large images)."""

    sampler: str = "dds"
    nfe: int = 50
    num_samples: int = 4
    cg_iters: int = 5
    schedule: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    noise_sigma: float | None = None
    batch_size: int | None = None
    corrector_steps: int = 1
    snr: float = 0.16
    lam: float | None = None
    # DPS step size. 10 on the real 8-coil brain at R=4 (one sample, shipped prior): 13.7 dB at
    # zeta=1, 25.0 at 5, 30.1 at 10, 29.7 at 20 (50 NFE); 32.5 dB at 10 with 100 NFE.
    zeta: float = 10.0
    # DDS stochasticity (DDIM eta; sample_dds's own default stays 0.8). 1.0 beat or matched 0.8
    # with the shipped prior (H100, 8 samples, 50 NFE, benchmarks/prior_quality.md): R=4 +0.12 dB,
    # R=8 +0.28, Poisson -0.02, held-out FLAIR +0.22.
    eta: float = 1.0
    # DDS trust in the data relative to the denoiser. 3 beat 1 on every case of
    # benchmarks/prior_quality.md with the shipped prior (R=4 +0.44 dB, R=8 +0.11, Poisson +0.56,
    # held-out FLAIR subject +0.24; H100, 8 samples, 50 NFE).
    dc_scale: float = 3.0
    # the prior's calibration of the std (model card, diffusion_core.uncertainty); () = none
    calibration: tuple[CalibrationEntry, ...] = ()
    # per-scan data weight by k-space cross-validation (off when empty): for a 2D (Poisson-like)
    # mask, 20 % of the sampled entries outside the calibration block are held back, one sample
    # at ``cg_select_nfe`` NFE is drawn per candidate cg_iters from the rest, and the candidate whose
    # sample best predicts the held-back entries is used (benchmarks/results/kspace_cv.md: right
    # on 5 of 5 Poisson cases; no signal for 1D masks, which keep ``cg_iters``). Costs
    # len(cg_select) x cg_select_nfe network evaluations more. Opt-in: not yet checked on subjects
    # other than the ones it was found on.
    cg_select: tuple[int, ...] = ()
    cg_select_nfe: int = 8
    # DDS data trust for line (1D) masks by where the object lies (off when None): where the
    # object is inside the field of view in the phase-encode direction (the CG-SENSE image has
    # no signal at its edges, :func:`fov_place`) and the noise is low (FOV_RULE_NOISE),
    # ``cg_iters_inside`` CG iterations are used instead of ``cg_iters``. More iterations help
    # such cases and cost 0.85-1.7 dB where a head is cut by the FOV: there the single-set
    # ESPIRiT maps are wrong at the seam and more data trust fits their error
    # (benchmarks/results/quality_ablation_cpu.md section 7; benchmarks/results/fov_rule.md).
    # Not for lines on a regular grid (:func:`diffusion_core.masks.regular_spacing`, a scanner's
    # GRAPPA / SENSE pattern): there 10 iterations against 5 lost 0.19-0.79 dB on 5 of 6 heads
    # inside the FOV at noise 0.01; and regular lines whose noise is above the limit get
    # ``cg_iters_cut``: 3 against 5 gained on 16 of 18 such cases (R = 2-4, noise 0.02-0.03,
    # median +0.3 dB), where random lines lose up to 0.26 dB with 3
    # (benchmarks/results/replay_equispaced.md).
    cg_iters_inside: int | None = None
    # ... and where the FOV cuts the object on both sides in the phase-encode direction (both
    # outer line pairs carry signal, FOV_CUT_SIGNAL), ``cg_iters_cut`` (fewer) CG iterations: the
    # ESPIRiT maps blend the two cut sides at the seam, and less data trust fits less of that
    # error (+0.2-0.9 dB on the three cut heads measured, fov_rule.md); also for regular lines
    # at noise above the limit (above); off when None
    cg_iters_cut: int | None = None
    # K = 1: also a width, the linear-Gaussian posterior std
    # (:func:`diffusion_core.uncertainty.linear_posterior_std`, calibrated by the card's K = 1
    # entries); off: K = 1 has no std. No effect for K >= 2 (the samples' std) or for the
    # per-coil sampler (no SENSE model)
    linear_width: bool = False
    # ESPIRiT map sets where the maps are estimated: 0 (auto) uses a second set (soft SENSE, a
    # second image x2 solved for in every data-consistency step) where it covers at least
    # TWO_SET_FRACTION of the support, the sign of a phase-encode FOV smaller than the object; 1
    # never; 2 wherever it is not empty. Samplers that need a single-image residual (dps) and the
    # per-coil one keep one set
    map_sets: int = 0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {SAMPLERS}, got {self.sampler!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if self.num_samples < 1:
            raise ValueError(
                f"num_samples: expected K >= 1 posterior samples, got {self.num_samples}"
            )
        if self.map_sets not in (0, 1, 2):
            raise ValueError(f"map_sets: expected 0 (auto), 1 or 2, got {self.map_sets}")
        if self.nfe < 1 or self.cg_iters < 1 or self.corrector_steps < 0:
            raise ValueError(
                f"nfe, cg_iters, corrector_steps: expected >= 1, >= 1, >= 0; "
                f"got {self.nfe}, {self.cg_iters}, {self.corrector_steps}"
            )
        for name in ("cg_iters_inside", "cg_iters_cut"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1 or None, got {getattr(self, name)}")
        if any(c < 1 for c in self.cg_select) or self.cg_select_nfe < 1:
            raise ValueError(
                f"cg_select, cg_select_nfe: expected CG iteration counts >= 1 and NFE >= 1; "
                f"got {self.cg_select}, {self.cg_select_nfe}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1 or None, got {self.batch_size}")
        if self.noise_sigma is not None and not self.noise_sigma >= 0:
            raise ValueError(f"noise_sigma: expected >= 0 or None, got {self.noise_sigma}")

    @property
    def steps(self) -> int:
        """Number of noise levels the sampler steps through for ``nfe`` evaluations."""
        per = (
            1 + self.corrector_steps
            if self.sampler in ("song", "score_mri", "score_mri_ssos")
            else 1
        )
        return max(1, (self.nfe + per - 1) // per)  # the last level (0) has no corrector

    def sigmas(self) -> torch.Tensor:
        if self.schedule == "karras":
            return schedules.karras(self.steps, self.sigma_min, self.sigma_max)
        if self.schedule == "ve_geometric":
            return schedules.ve_geometric(self.steps, self.sigma_min, self.sigma_max)
        if self.schedule == "vp_linear":
            return schedules.vp_linear(self.steps)
        return schedules.vp_cosine(self.steps, sigma_max=self.sigma_max)


@dataclass(frozen=True)
class ReconProgress:
    """Reported after every sampler step: samples [first_sample, first_sample + batch) of
    num_samples are at ``step`` of ``total_steps`` (noise level ``sigma``)."""

    first_sample: int
    batch: int
    num_samples: int
    step: int
    total_steps: int
    sigma: float


@dataclass(frozen=True)
class Reconstruction:
    """mean (y, x) complex, std (y, x) real (per-pixel posterior standard deviation, E|x - mean|^2
    with K - 1), samples (K, y, x) complex, maps (c, y, x) complex (after prewhitening, if any),
    scale: the factor between the prior's scale and the data's, noise_sigma: in the prior's scale,
    support (y, x) bool: the pixels reconstructed; mean, std and samples are exactly zero elsewhere.

    ``std`` is the calibrated one when ``calibrated`` (mean +- 2 std is the nominal 95 % interval;
    ``calibration_factor`` = std / std_raw, ``calibration_data`` what it was fitted on), else the
    raw one; ``std_raw`` is always the raw sample std (for K = 1 with ``linear_width``, the
    linear-Gaussian width); ``calibration_note`` says which, and why. ``has_std`` is False for
    K = 1 without ``linear_width`` (one sample has no spread: std is zeros and means nothing).
    ``residual_ratio``: the data misfit of the mean, mean |M F S mean - y|^2 / (2 sigma^2) over
    the sampled entries (:func:`diffusion_core.uncertainty.data_residual_ratio`; 1 for a per-coil
    mean), which calibrations with a residual exponent inflate the std by."""

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    maps: torch.Tensor
    scale: float
    noise_sigma: float
    support: torch.Tensor
    std_raw: torch.Tensor | None = None
    has_std: bool = True
    calibrated: bool = False
    calibration_factor: float = 1.0
    calibration_data: str = ""
    calibration_note: str = ""
    residual_ratio: float = 1.0
    # what the std is: the spread of the samples, or (K = 1, ``linear_width``) the
    # linear-Gaussian posterior width
    std_kind: str = "samples"
    # the CG iterations the samples used (0: not recorded), and the held-back misfit per
    # candidate where ``ReconConfig.cg_select`` chose them (empty otherwise)
    cg_iters: int = 0
    cg_scores: dict[int, float] = field(default_factory=dict)
    # how cg_iters was chosen, where a rule chose it (``cg_iters_inside`` / ``cg_iters_cut``,
    # ``cg_select``)
    cg_note: str = ""
    # ESPIRiT map sets used (2: soft SENSE where the tissue folds; ``map_note`` says where)
    map_sets: int = 1
    map_note: str = ""
    # the coil images (c, y, x) the mean's model predicts (maps x mean, plus the second set's
    # image where two sets are used), in the units of the (prewhitened) data: fft2c of it is
    # the k-space the reconstruction explains, e.g. to score lines held back from it
    model: torch.Tensor | None = None


def estimate_noise_sigma(kspace: torch.Tensor, mask: torch.Tensor, fraction: float = 0.1) -> float:
    """Noise std per real channel from the outermost ``fraction`` of the sampled k-space entries
    (by max(|ky|/ny, |kx|/nx)), by the median absolute deviation; the periphery holds little signal,
    so this slightly overestimates the noise where the signal reaches the edge of k-space."""
    ny, nx = mask.shape
    ky = (torch.arange(ny, device=mask.device) - ny // 2).abs() / ny
    kx = (torch.arange(nx, device=mask.device) - nx // 2).abs() / nx
    radius = torch.maximum(ky[:, None], kx[None, :])[mask != 0]
    vals = kspace[:, mask != 0]
    keep = radius >= torch.quantile(radius.double(), 1.0 - fraction).to(radius.dtype)
    vals = vals[:, keep]
    parts = torch.cat([vals.real.flatten(), vals.imag.flatten()]).double()
    return float(1.4826 * (parts - parts.median()).abs().median())


def _check(kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor | None) -> None:
    require_complex(kspace, "kspace")
    if kspace.ndim != 3:
        raise ValueError(f"kspace: expected shape (coils, ky, kx), got {tuple(kspace.shape)}")
    require_finite(kspace, "kspace")
    if mask.shape != kspace.shape[-2:] or mask.is_complex():
        raise ValueError(
            f"mask: expected a real (ky, kx) = {tuple(kspace.shape[-2:])} mask, got {tuple(mask.shape)}"
        )
    if not bool((mask != 0).any()):
        raise ValueError(
            "mask: has no sampled k-space entries; expected at least the calibration region"
        )
    if maps is not None and maps.shape != kspace.shape:
        raise ValueError(
            f"maps: expected shape {tuple(kspace.shape)} (coils, y, x), got {tuple(maps.shape)}"
        )


def reconstruct(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    denoiser: Denoiser,
    config: ReconConfig | None = None,
    *,
    maps: torch.Tensor | None = None,
    noise_cov: torch.Tensor | None = None,
    support: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[ReconProgress], None] | None = None,
) -> Reconstruction:
    """Posterior reconstruction of one slice.

    Args:
        kspace: (coils, ky, kx) complex64, zeros (or anything) where not sampled.
        mask: (ky, kx) real, 1 = sampled.
        denoiser: ``denoise(x (B, y, x), sigma) -> x0`` in the prior's normalisation.
        config: sampler and its settings.
        maps: (coils, y, x) coil sensitivities; estimated by ESPIRiT from the calibration region of
            the mask if not given.
        noise_cov: (coils, coils) noise covariance of the raw data; the data (and given maps) are
            prewhitened with it and the noise level follows from it. The maps keep the shading of
            unwhitened ones (:func:`whitened_espirit_maps`) and are scaled to about unit norm, so
            the mean is in whitened units (the noise's standard deviation in k-space is 1/sqrt(2)
            per real channel) whether the maps were given or estimated.
        support: (y, x) bool, where the object may be; the result is restricted to it and to the
            pixels a coil sees (non-zero maps), which alone are the default.
        generator: source of all randomness (same seed -> same result).
        progress: called with a :class:`ReconProgress` after every sampler step.
    """
    cfg = config or ReconConfig()
    _check(kspace, mask, maps)
    mask = mask.to(device=kspace.device, dtype=kspace.real.dtype)
    kspace = kspace * mask
    whitened = noise_cov is not None
    second: torch.Tensor | None = None
    want_sets = cfg.map_sets != 1 and cfg.sampler in TWO_SET_SAMPLERS
    if noise_cov is not None:
        from diffusion_core.noise import prewhiten, prewhitening_matrix

        w = prewhitening_matrix(noise_cov.to(kspace.device))
        kspace = prewhiten(kspace, w)
        maps = None if maps is None else prewhiten(maps.to(kspace.dtype), w)
        if maps is None:
            maps, second = _estimated_maps(kspace, mask, w, want_sets)
        norm = _typical_norm(maps)
        maps, second = maps / norm, None if second is None else second / norm
    if maps is None:
        maps, second = _estimated_maps(kspace, mask, None, want_sets)
    maps = maps.to(kspace.dtype)
    support = image_support(maps, support)
    second, map_note = _second_set(second, support, cfg.map_sets)
    if map_note:
        log.info("coil maps: %s", map_note)
    restricted = None if bool(support.all()) else support
    sense = cg_sense(kspace, mask, maps, max_iter=cfg.cg_iters * 4)
    scale = float(magnitude_scale(sense))
    if cfg.noise_sigma is not None:
        noise_sigma = cfg.noise_sigma
    else:
        raw = 1.0 / math.sqrt(2.0) if whitened else estimate_noise_sigma(kspace, mask)
        noise_sigma = raw / scale
    y = kspace / scale
    log.info(
        "reconstruct: sampler=%s steps=%d scale=%.4g noise_sigma=%.4g support=%.1f%%",
        cfg.sampler,
        cfg.steps,
        scale,
        noise_sigma,
        100.0 * float(support.float().mean()),
    )
    per_coil = cfg.sampler == "score_mri_ssos"
    cv_scores: dict[int, float] = {}
    cg_note = ""
    axis, sampling = phase_encode_axis(mask), mask_sampling(mask)
    rule = cfg.cg_iters_inside is not None or cfg.cg_iters_cut is not None
    if rule and not per_coil and axis is not None:
        low, high = (v / scale for v in fov_edge_sides(sense, axis))
        place = fov_place(low, high)
        limit = inside_noise_limit(
            measured=whitened or cfg.noise_sigma is not None, acceleration=acceleration_class(mask)
        )
        spacing = regular_spacing(mask, axis)
        quiet = noise_sigma < limit
        grid = ""
        if place == INSIDE and cfg.cg_iters_inside is not None and quiet:
            if spacing is None:
                cfg = replace(cfg, cg_iters=cfg.cg_iters_inside)
            else:
                grid = f"; the lines a regular grid (one in {spacing}): no more data trust inside"
        elif place == CUT and cfg.cg_iters_cut is not None:
            cfg = replace(cfg, cg_iters=cfg.cg_iters_cut)
        elif spacing is not None and not quiet and cfg.cg_iters_cut is not None:
            cfg = replace(cfg, cg_iters=cfg.cg_iters_cut)
            grid = f"; the lines a regular grid (one in {spacing}) and the noise above the limit"
        cg_note = (
            f"line mask, the object {place} in the phase-encode direction (CG-SENSE signal in "
            f"the outer {FOV_EDGE_LINES} lines {low:.3f} / {high:.3f} of the image scale; "
            f"inside below {FOV_EDGE_SIGNAL:g} on average, cut from {FOV_CUT_SIGNAL:g} on both "
            f"sides), noise {noise_sigma:.3f} of it (limit {limit:g}){grid}: "
            f"cg_iters {cfg.cg_iters}"
        )
        log.info("data trust: %s", cg_note)
    if cfg.cg_select and not per_coil and sampling == "2d":
        held = held_back_entries(mask)
        cv_scores = {
            cg: _held_back_score(
                cfg, cg, y, mask, held, maps, noise_sigma, support, denoiser, generator
            )
            for cg in cfg.cg_select
        }
        cfg = replace(cfg, cg_iters=min(cv_scores, key=cv_scores.__getitem__))
        scores = ", ".join(f"{c}: {v:.4g}" for c, v in cv_scores.items())
        cg_note = (
            f"chosen by held-back k-space misfit (reduced chi-square {scores}); "
            f"cg_iters {cfg.cg_iters}"
        )
        log.info("cg_select: %s", cg_note)
    elif cfg.cg_select:
        log.info(
            "cg_select: skipped (%s mask: held-back lines carry no signal); cg_iters %d",
            sampling.upper(),
            cfg.cg_iters,
        )
    dc: DataConsistency
    if per_coil:
        dc = CoilDataConsistency(mask, y, noise_sigma, restricted, cfg.cg_iters)
    else:
        dc = SenseDataConsistency(maps, mask, y, noise_sigma, cfg.cg_iters, support, second)
    sigmas = cfg.sigmas().to(kspace.device)
    k = cfg.num_samples
    batch = cfg.batch_size or (k if kspace.device.type == "cuda" else 1)
    image_shape = kspace.shape if per_coil else kspace.shape[-2:]
    samples, seconds = [], []
    for first in range(0, k, batch):
        b = min(batch, k - first)
        x = float(sigmas[0]) * complex_noise(
            torch.zeros((b, *image_shape), dtype=kspace.dtype, device=kspace.device), generator
        )
        callback = None
        if progress is not None:

            def callback(s: SamplerStep, first: int = first, b: int = b) -> None:
                progress(ReconProgress(first, b, k, s.step, s.total, s.sigma))

        out = _run(cfg, x, sigmas, denoiser, dc, generator, callback).detach()
        if second is not None and isinstance(dc, SenseDataConsistency):
            seconds.append(dc.second_image(out))
        samples.append(_ssos(out).to(kspace.dtype) if per_coil else out)
    xs = torch.cat(samples) * scale
    # the data misfit of the mean (reduced chi-square against the measured k-space), for
    # entries whose model inflates the std by it; a per-coil (SSOS) mean has no such misfit
    sigma = noise_sigma * scale
    coil_model = maps * xs.mean(0)
    if second is not None:
        x2 = torch.cat(seconds) * scale
        coil_model = coil_model + second * x2.mean(0)
        # the image: root sum of squares of the two sets' images (BART's rss), x1's phase
        xs = torch.polar((xs.abs().square() + x2.abs().square()).sqrt(), xs.angle())
    mean = xs.mean(0)
    residual_ratio = (
        1.0
        if per_coil or not sigma > 0
        else data_residual_ratio(kspace, mask, coil_model, torch.ones_like(mean), sigma)
    )
    linear = k == 1 and cfg.linear_width and not per_coil
    if k == 1 and not linear:
        std = torch.zeros(mean.shape, dtype=kspace.real.dtype, device=mean.device)
        why = "the per-coil sampler has no SENSE model for a width" if per_coil else "no std"
        cal = CalibratedStd(std, False, 1.0, "", f"K = 1: one sample has no spread; {why}")
        log.info("std: %s", cal.note)
    else:
        if linear:
            probe = SenseDataConsistency(maps, mask, y, noise_sigma, LINEAR_CG_ITERS, support)
            # its own probes: the samples of this and later slices do not depend on the width
            probes = torch.Generator(device=kspace.device).manual_seed(LINEAR_SEED)
            std = linear_posterior_std(probe, generator=probes) * scale
        else:
            std = xs.var(0).sqrt()
        setting = Setting(
            cfg.sampler,
            cfg.nfe,
            k,
            cfg.cg_iters,
            acceleration_class(mask),
            sampling,
            matrix_size(mask),
        )
        # the noise the mean keeps from the sampled fraction of k-space (data units), where the
        # image is reconstructed (outside the support mean and std stay exactly zero)
        noise_var = float(mask.mean()) * (noise_sigma * scale) ** 2 * support.to(std.dtype)
        cal = calibrate_std(std, setting, cfg.calibration, noise_var, residual_ratio)
    return Reconstruction(
        mean,
        cal.std,
        xs,
        maps,
        scale,
        noise_sigma,
        support,
        std_raw=std,
        has_std=k > 1 or linear,
        calibrated=cal.calibrated,
        calibration_factor=cal.factor,
        calibration_data=cal.data,
        calibration_note=cal.note,
        residual_ratio=residual_ratio,
        std_kind="linear" if linear else "samples",
        cg_iters=cfg.cg_iters,
        cg_scores=cv_scores,
        cg_note=cg_note,
        map_sets=1 if second is None else 2,
        map_note=map_note,
        model=None if per_coil else coil_model,
    )


# samplers that see the data only through prox / noised / restrict, so that a second map set's
# image can be solved for inside them; dps needs a single-image residual, score_mri_ssos has
# no maps
TWO_SET_SAMPLERS = ("dds", "song", "score_mri", "langevin")
# the share of the support a second ESPIRiT set must cover (auto): 0.23 on the ESPIRiT demo's
# small-FOV brain (its phase-encode FOV smaller than the head, the tissue folds), 0.004 on the
# fully sampled 8-coil brain and 0 on the 2-channel phantom (edge pixels, second eigenvalue
# 0.84 / 0.72 at most)
TWO_SET_FRACTION = 0.02


def _estimated_maps(
    kspace: torch.Tensor, mask: torch.Tensor, w: torch.Tensor | None, two: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ESPIRiT's first set of kspace (c, ky, kx) and, where ``two``, its second (else None), in
    the receivers' norm where ``w`` (the prewhitening matrix) is given, as
    :func:`whitened_espirit_maps`."""
    from diffusion_core.espirit import espirit_map_sets, espirit_maps

    first, second = espirit_map_sets(kspace, mask) if two else (espirit_maps(kspace, mask), None)
    if w is None:
        return first, second
    return _receiver_norm(first, w), None if second is None else _receiver_norm(second, w)


def _second_set(
    second: torch.Tensor | None, support: torch.Tensor, map_sets: int
) -> tuple[torch.Tensor | None, str]:
    """The second set to use (None: one set) within ``support``, and what the meta say."""
    if second is None:
        return None, ""
    covered = (second.abs().sum(0) > 0) & support
    share = float(covered.sum()) / max(1, int(support.sum()))
    if share == 0 or (map_sets == 0 and share < TWO_SET_FRACTION):
        return None, ""
    note = (
        f"two ESPIRiT map sets (soft SENSE): the second covers {100 * share:.1f}% of the "
        f"object's pixels, where two coil sensitivities meet at a pixel (tissue folding in "
        f"from outside a phase-encode FOV smaller than the object, or a head the FOV cuts); "
        f"the image is the root sum of squares of the two sets' images"
    )
    return second * covered, note


def whitened_espirit_maps(
    kspace: torch.Tensor, mask: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """ESPIRiT maps of prewhitened k-space (c, ky, kx), given in the convention of unwhitened
    maps: each pixel's map is ``W s`` with ``s`` of unit root-sum-of-squares in the receivers'
    own space (``W``: the prewhitening matrix).

    ESPIRiT's maps have unit norm in the space it is given, so on whitened data the image would
    be the object times |W s|: shaded by the noise's coil geometry (about 15 % RMS for receivers
    with correlated noise) and by the error of the noise covariance where the noise scan is short
    (a 256-sample scan of 8-10 white channels: eigenvalues off by up to 30 %, shading 1-2 % RMS,
    up to 0.9 dB of the posterior mean; benchmarks/results/replay_check.md). Returned to unit
    norm in the receivers' space, the image is the object whether or not the data were
    prewhitened.
    """
    from diffusion_core.espirit import espirit_maps

    return _receiver_norm(espirit_maps(kspace, mask), w)


def _receiver_norm(maps: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Whitened maps (c, y, x) scaled to unit root-sum-of-squares in the receivers' own space
    (``w``: the prewhitening matrix); zero pixels stay zero."""
    c = maps.shape[0]
    raw = torch.linalg.solve_triangular(w.to(maps.dtype), maps.reshape(c, -1), upper=False).reshape(
        maps.shape
    )
    norm = raw.abs().pow(2).sum(0).sqrt()
    return torch.where(norm > 0, maps / norm.clamp_min(1e-30), torch.zeros_like(maps))


def _typical_norm(maps: torch.Tensor) -> float:
    """The median root-sum-of-squares of ``maps`` over the pixels a coil sees: whitened maps are
    divided by it, so that they have about unit norm (the samplers' noise level and weights
    assume it) while keeping the image's shading that of unwhitened maps."""
    norm = maps.abs().pow(2).sum(0).sqrt()
    seen = norm[norm > 0]
    if seen.numel() == 0:
        return 1.0
    return float(seen.median())


# the object lies inside the field of view (``ReconConfig.cg_iters_inside``) where the mean
# magnitude of the outer FOV_EDGE_LINES phase-encode lines of the CG-SENSE image (both ends) is
# under FOV_EDGE_SIGNAL of the image scale (its 99th percentile): 0.000-0.022 for the heads
# inside the FOV of the development cases, 0.10-0.15 for heads that touch it, 0.18-0.31 for cut
# ones (benchmarks/results/fov_rule.md)
FOV_EDGE_LINES = 2
FOV_EDGE_SIGNAL = 0.1
# ... and only where the noise per real channel is under FOV_RULE_NOISE of the image scale: at
# 0.05-0.1 more CG iterations fit the noise and cost up to 0.75 dB (7 of 8 cases) on heads
# inside the FOV too (benchmarks/results/fov_rule.md); at 0.01-0.03 they help
FOV_RULE_NOISE = 0.04
# ... where the noise is measured (a noise scan: the data are prewhitened, or ``noise_sigma`` is
# given), under FOV_RULE_NOISE_MEASURED at R <= 4 instead: through the replay with a noise scan,
# on heads inside the FOV at 128-256, cg_iters 10 against 5 costs 0.13-0.61 dB at R=4 at noise
# 0.03 (9 of 9 cases), -0.33 to +0.04 (median -0.12) at 0.02 and gains 0.09-0.45 dB at 0.01,
# while at R=8 it gains 0.01-0.19 at both (benchmarks/results/fov_rule_noise.md; the measured
# noise reads 0.010 / 0.019-0.021 / 0.026-0.030 for those). The estimate from the k-space
# periphery, used without a noise scan, reads 0.012-0.023 for a simulated 0.005 (its signal
# inflates it), so the lower limit needs the measured level
FOV_RULE_NOISE_MEASURED = 0.015
FOV_RULE_NOISE_MEASURED_MAX_R = 4
# cut on both sides: each side's outer lines at least FOV_CUT_SIGNAL of the image scale
# (0.14-0.31 on the cut heads, at most 0.093 on the side a touching head leaves free)
FOV_CUT_SIGNAL = 0.12


def inside_noise_limit(measured: bool, acceleration: int) -> float:
    """The noise (over the image scale) under which a head inside the FOV gets
    ``cg_iters_inside``: FOV_RULE_NOISE_MEASURED where a noise scan measured the noise and R is
    at most FOV_RULE_NOISE_MEASURED_MAX_R, else FOV_RULE_NOISE."""
    if measured and acceleration <= FOV_RULE_NOISE_MEASURED_MAX_R:
        return FOV_RULE_NOISE_MEASURED
    return FOV_RULE_NOISE


INSIDE = "inside the field of view"
CUT = "cut by the field of view on both sides"
AT_EDGE = "at the edge of the field of view"


def fov_place(low: float, high: float) -> str:
    """Where the object lies in the phase-encode direction, from :func:`fov_edge_sides` over
    the image scale: :data:`INSIDE` (their mean under FOV_EDGE_SIGNAL), :data:`CUT` (both at
    least FOV_CUT_SIGNAL) or :data:`AT_EDGE`."""
    if (low + high) / 2 < FOV_EDGE_SIGNAL:
        return INSIDE
    return CUT if min(low, high) >= FOV_CUT_SIGNAL else AT_EDGE


def fov_edge_sides(
    image: torch.Tensor, axis: int, lines: int = FOV_EDGE_LINES
) -> tuple[float, float]:
    """Mean magnitude of ``image`` (y, x) in the outer ``lines`` lines at the low and the high
    end of ``axis`` (0: y, 1: x): background (noise) where the object lies inside the field of
    view, signal where it reaches that edge."""
    m = image.abs()
    if axis == 1:
        m = m.T
    lines = max(1, min(lines, m.shape[0] // 2))
    return float(m[:lines].mean()), float(m[-lines:].mean())


def fov_edge_signal(image: torch.Tensor, axis: int, lines: int = FOV_EDGE_LINES) -> float:
    """The mean of :func:`fov_edge_sides`: about 0 for an object inside the field of view in
    the direction of ``axis``."""
    low, high = fov_edge_sides(image, axis, lines)
    return (low + high) / 2


def held_back_entries(
    mask: torch.Tensor, fraction: float = 0.2, seed: int = 1234, columns: bool = False
) -> torch.Tensor:
    """(ky, kx) bool: ``fraction`` of the sampled entries outside the calibration block, drawn
    with ``seed`` (whole sampled columns when ``columns``, as for a 1D mask)."""
    from diffusion_core.calibration import calibration_region

    rows, cols = calibration_region(mask)
    sampled = (mask != 0).cpu()
    acs = torch.zeros(sampled.shape, dtype=torch.bool)
    acs[rows, cols] = True
    candidates = sampled & ~acs
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros_like(acs)
    if columns:
        found = torch.nonzero(candidates.all(0)).flatten()
        count = max(1, int(len(found) * fraction + 1e-9))
        held[:, found[torch.randperm(len(found), generator=g)[:count]]] = True
    else:
        points = torch.nonzero(candidates)
        pick = points[
            torch.randperm(len(points), generator=g)[: int(len(points) * fraction + 1e-9)]
        ]
        held[pick[:, 0], pick[:, 1]] = True
    return held.to(mask.device)


def _held_back_score(cfg, cg_iters, y, mask, held, maps, noise_sigma, support, denoiser, generator):
    """Reduced chi-square of the ``held`` entries (:func:`held_back_entries`) predicted by one
    sample at ``cfg.cg_select_nfe`` NFE drawn with ``cg_iters`` from the rest of ``y``."""
    if not bool(held.any()):
        return math.inf
    train = mask * (~held).to(mask.dtype)
    probe = replace(cfg, nfe=cfg.cg_select_nfe, cg_iters=cg_iters)
    dc = SenseDataConsistency(maps, train, y * train, noise_sigma, cg_iters, support)
    sigmas = probe.sigmas().to(y.device)
    x = float(sigmas[0]) * complex_noise(
        torch.zeros((1, *y.shape[-2:]), dtype=y.dtype, device=y.device), generator
    )
    sample = _run(probe, x, sigmas, denoiser, dc, generator, None).detach()[0]
    return data_residual_ratio(y, held, maps, sample, max(noise_sigma, 1e-30))


def _ssos(coil_images: torch.Tensor) -> torch.Tensor:
    """Square root of the sum of squares over coils (B, c, y, x) -> (B, y, x), as in Chung & Ye 2022."""
    return coil_images.abs().pow(2).sum(-3).sqrt()


def _run(cfg, x, sigmas, denoiser, dc, generator, callback) -> torch.Tensor:
    """Dispatch to the sampler named in the config (the only place that reads ``cfg.sampler``)."""
    if cfg.sampler == "dps":
        return sample_dps(x, sigmas, denoiser, dc, generator, callback, zeta=cfg.zeta)
    if cfg.sampler == "langevin":
        with torch.no_grad():
            return sample_langevin(x, sigmas, denoiser, dc, generator, callback)
    with torch.no_grad():
        if cfg.sampler == "dds":
            return sample_dds(
                x, sigmas, denoiser, dc, generator, callback, eta=cfg.eta, dc_scale=cfg.dc_scale
            )
        if cfg.sampler == "song":
            return sample_song2022(
                x,
                sigmas,
                denoiser,
                dc,
                generator,
                callback,
                lam=cfg.lam,
                corrector_steps=cfg.corrector_steps,
                snr=cfg.snr,
            )
        return sample_score_mri(
            x,
            sigmas,
            denoiser,
            dc,
            generator,
            callback,
            corrector_steps=cfg.corrector_steps,
            snr=cfg.snr,
        )
