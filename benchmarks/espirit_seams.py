"""Can ESPIRiT's maps be mended where a head is cut by the FOV on both sides? (a negative result)

ESPIRiT's maps come from a k-space kernel, so they are periodic across the FOV. Where the object
reaches the left and the right edge of a row without wrapping round (the generalization
benchmark's partial heads, ``fov_scale`` < 1), the two sides of that seam are seen by different
coils and W(r)'s top eigenvector near the edge blends both. This script measures, on the
benchmark's held-out FLAIR cases, the map error 1 - |<m, m_true>| in the 4 edge columns (inside the
object) for

* ``top``: the top eigenvector (what ``espirit_maps`` returns);
* ``span``: the best unit vector in the span of W(r)'s top two eigenvectors (a lower bound);
* ``oracle``: the map continued from ``reach`` = n / (2 k) columns inside the edge, each column's
  map the previous one projected onto its pixel's top-two span, in the rows where the reference
  object touches both edges (known only to a simulation);
* ``detected``: the same in the rows a 10-iteration CG-SENSE image of the undersampled data says
  touch both edges (mean |x| of the 2 outermost columns on each side > 0.2 x its 99th percentile);
* ``everywhere``: the same in every row.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/espirit_seams.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.espirit_edge_error import held_out_flair_cases, image_space_matrices  # noqa: E402
from benchmarks.generalization import DATA  # noqa: E402
from benchmarks.generalization_cases import make_mask  # noqa: E402
from diffusion_core import espirit  # noqa: E402
from diffusion_core.classical import cg_sense  # noqa: E402

MASKS = ("R=4 1D random", "R=8 1D random", "R=8 2D Poisson")


def touches_both_sides(image: torch.Tensor, level: float = 0.2, edge: int = 2) -> torch.Tensor:
    """Rows (y,) whose mean magnitude in the ``edge`` outermost columns on both sides is above
    ``level`` x the image's 99th percentile."""
    mag = image.abs()
    top = torch.quantile(mag.flatten().float(), 0.99)
    return (mag[:, :edge].mean(-1) > level * top) & (mag[:, -edge:].mean(-1) > level * top)


def project(v1: torch.Tensor, v2: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    s = (v1.conj() * m).sum(-1, keepdim=True) * v1 + (v2.conj() * m).sum(-1, keepdim=True) * v2
    return s / s.norm(dim=-1, keepdim=True).clamp_min(1e-30)


def continued(v1: torch.Tensor, v2: torch.Tensor, rows: torch.Tensor, reach: int) -> torch.Tensor:
    """Maps (y, x, c): in ``rows``, the edge columns walked outwards from ``reach`` inside."""
    out = v1.clone()
    nx = v1.shape[1]
    for k in range(reach - 1, -1, -1):
        for col, inner in ((k, k + 1), (nx - 1 - k, nx - 2 - k)):
            out[rows, col] = project(v1[rows, col], v2[rows, col], out[rows, inner])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(
        "| case | mask | rows touching both sides: true / detected / both | top | span | oracle | detected | everywhere |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in held_out_flair_cases(args.data_dir):
        ref, truth = case.reference, case.maps_true.permute(1, 2, 0)
        ny, nx = ref.shape[-2:]
        obj = ref.abs() > 0.05 * ref.abs().max()
        cols = torch.arange(nx)
        edge = obj & (torch.minimum(cols, nx - 1 - cols) < 4)[None, :]
        for name in MASKS:
            mask = make_mask(name, (ny, nx), args.seed)
            kspace = case.kspace * mask
            w, kernel, _ = image_space_matrices(kspace, mask)
            l1, v1 = espirit._top_eigenpair(w)
            deflated = w - l1[..., None, None] * (v1[..., :, None] @ v1[..., None, :].conj())
            v2 = espirit._top_eigenpair(deflated)[1]
            reach = max(1, round(nx / (2 * kernel[1])))
            true_rows = touches_both_sides(ref)
            image = cg_sense(kspace, mask, v1.permute(2, 0, 1), max_iter=10)
            found = touches_both_sides(image)

            def error(
                m: torch.Tensor, truth: torch.Tensor = truth, edge: torch.Tensor = edge
            ) -> str:
                e = 1 - (m.conj() * truth).sum(-1).abs()
                return f"{float(e[edge].mean()):.4f}" if bool(edge.any()) else "-"

            span = project(v1, v2, truth)
            row = [
                case.meta.name.split(",")[0],
                name,
                f"{int(true_rows.sum())} / {int(found.sum())} / {int((true_rows & found).sum())}",
                error(v1),
                error(span),
                error(continued(v1, v2, true_rows, reach)),
                error(continued(v1, v2, found, reach)),
                error(continued(v1, v2, torch.ones(ny, dtype=torch.bool), reach)),
            ]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
