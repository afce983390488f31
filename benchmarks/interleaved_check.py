"""Interleaved calibration on ismrmrd-tools' own files: the product beside BART, through the CLI.

``ismrmrd_generate_cartesian_shepp_logan -a R`` (no ``-w``: no ACS lines) writes R repetitions,
each with every R-th line at another shift, and calibration mode ``interleaved``. Each file is
replayed with ``gadgetron-diffusion replay`` at its defaults; BART gets each repetition's lines
with ``bart ecalib -m1`` maps from the same interleaved calibration the product's maps are made
from (the average k-space of the R repetitions), then ``bart pics -l1`` at the best of a grid of
weights and ``bart pics -l2`` (CG-SENSE). PSNR is against the file's ``/phantom`` on magnitudes
after the best scalar fit (:func:`diffusion_core.metrics.psnr`). The table gives each repetition
and the minimum over them per R.

    python benchmarks/interleaved_check.py [--matrix 128] [--coils 8] [--noise 0.05] [--accelerations 2 3 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion_core.metrics import psnr  # noqa: E402
from gadget.assembly import assemble, group_slices, interleaved_calibration  # noqa: E402
from gadget.datasets import open_read_only  # noqa: E402
from gadget.geometry import EncodingGeometry  # noqa: E402
from gadget.stream import cartesian_acquisitions, noise_adjustment  # noqa: E402
from tests.diffusion_core.bart_io import bart, read_cfl, write_cfl  # noqa: E402

L1_WEIGHTS = ("0.001", "0.003", "0.01", "0.03")


def assembled_slices(path: Path) -> list:
    """The slices of ``path`` as the gadget assembles them, with their interleaved calibration."""
    with open_read_only(path, "dataset") as dataset:
        xml = dataset.read_xml_header()
        items = [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]
    geometry = EncodingGeometry.from_header(ismrmrd.xsd.CreateFromDocument(xml))
    groups = group_slices(noise_adjustment(cartesian_acquisitions(items, list().append)))
    slices = (assemble(group, geometry) for group in groups)
    return list(
        interleaved_calibration(slices, geometry.interleave, geometry.interleaving_dimension)
    )


def bart_psnrs(assembled, phantom: np.ndarray, folder: Path) -> tuple[float, float]:
    """(best ``pics -l1``, ``pics -l2``) PSNR of one slice with ``ecalib -m1`` maps."""
    write_cfl(folder / "k", assembled.kspace.numpy())
    write_cfl(folder / "c", assembled.calibration.numpy())
    bart("ecalib", "-m1", folder / "c", folder / "s")
    scores = []
    for weight in L1_WEIGHTS:
        bart("pics", "-S", "-l1", "-r", weight, folder / "k", folder / "s", folder / "x")
        scores.append(psnr(phantom, read_cfl(folder / "x")))
    bart("pics", "-S", "-l2", "-r", "0.0001", folder / "k", folder / "s", folder / "x")
    return max(scores), psnr(phantom, read_cfl(folder / "x"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--accelerations", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args()
    print(
        f"ismrmrd_generate_cartesian_shepp_logan -m {args.matrix} -c {args.coils} "
        f"-n {args.noise} -a R (no ACS lines; calibration mode interleaved)\n"
    )
    print("| R | repetition | product | bart pics -l1 (best) | bart pics -l2 | product - l1 |")
    print("|---|---|---|---|---|---|")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in args.accelerations:
            source, output = folder / f"r{r}.h5", folder / f"r{r}_out.h5"
            subprocess.run(
                [
                    "ismrmrd_generate_cartesian_shepp_logan",
                    "-m", str(args.matrix), "-c", str(args.coils), "-a", str(r),
                    "-n", str(args.noise), "-o", str(source),
                ],
                check=True, capture_output=True,
            )  # fmt: skip
            subprocess.run(
                ["gadgetron-diffusion", "replay", "--no-progress", str(source), str(output)],
                check=True,
                capture_output=True,
            )
            with h5py.File(source) as f:
                raw = f["dataset/phantom"][0]
            phantom = np.abs(raw["real"] + 1j * raw["imag"])
            with h5py.File(output) as f:
                images = f["dataset/image_1/data"][:, 0, 0]
            margins = []
            for assembled, image in zip(assembled_slices(source), images, strict=True):
                ours = psnr(phantom, image.astype(np.float32))
                l1, l2 = bart_psnrs(assembled, phantom, folder)
                margins.append(ours - l1)
                print(
                    f"| {r} | {assembled.key.repetition} | {ours:.2f} | {l1:.2f} | {l2:.2f} "
                    f"| {ours - l1:+.2f} |"
                )
            summary.append((r, min(margins), statistics.median(margins)))
    print("\n| R | product - l1: minimum | median |")
    print("|---|---|---|")
    for r, low, mid in summary:
        print(f"| {r} | {low:+.2f} | {mid:+.2f} |")


if __name__ == "__main__":
    main()
