"""Make the bundled example ISMRMRD file gadget/examples/brain_t1_8ch_r4.h5 from license-clean data.

Source: one axial slice of niivue_chris_t1.nii.gz (niivue standard images, BSD-2-Clause),
read from ../shared/data/train_volumes. Simulated: a smooth phase, 8 smooth coil sensitivities
on a ring, correlated receiver noise, a noise scan (ACQ_IS_NOISE_MEASUREMENT), 2x readout
oversampling, and 1D undersampling of the phase-encode lines (every 4th line plus 24 central
ACS lines: ACS lines on the R = 4 grid are flagged ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
the others ACQ_IS_PARALLEL_CALIBRATION; calibration mode embedded).

    python scripts/make_example.py [--volume PATH] [--output PATH]

Deterministic (fixed seed); the output is < 3 MB. The header declares no ``<version>``: it is
optional in the schema, and libismrmrd's serializer rejects any version but its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ismrmrd
import nibabel as nib
import numpy as np
import torch
from skimage.transform import resize

from diffusion_core.fft import fft2c
from diffusion_core.masks import equispaced_columns_mask

ROOT = Path(__file__).resolve().parents[1]
VOLUME = ROOT.parent / "shared" / "data" / "train_volumes" / "niivue_chris_t1.nii.gz"
OUTPUT = ROOT / "gadget" / "examples" / "brain_t1_8ch_r4.h5"
N, COILS, ACCELERATION, ACS, OVERSAMPLING = 192, 8, 4, 24, 2
FOV_MM, SLICE_MM, DWELL_US = 225.0, 5.0, 7.5
NOISE_STD = 0.03  # per real channel, relative to a 99th-percentile magnitude of 1 per coil image


def brain_slice(volume: Path) -> np.ndarray:
    """Axial slice (y anterior-up, x left-right), 192 x 192 over 225 mm, 99th percentile 1."""
    data = np.asarray(
        nib.load(str(volume)).dataobj, dtype=np.float32
    )  # (188 R, 256 A, 190 S) 0.88 mm
    axial = data[:, :, 100].T[::-1]  # (A, R) with anterior at the top
    square = np.zeros((256, 256), dtype=np.float32)
    x0 = (256 - axial.shape[1]) // 2
    square[:, x0 : x0 + axial.shape[1]] = axial
    image = resize(square, (N, N), order=3, anti_aliasing=True).astype(np.float32)
    return np.clip(image, 0, None) / np.percentile(image, 99)


def smooth_phase(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : N * 1j, -1 : 1 : N * 1j]
    a = rng.normal(size=5)
    return np.exp(
        1j * (a[0] + a[1] * x + a[2] * y + 0.5 * a[3] * x * y + 0.5 * a[4] * (x**2 - y**2))
    )


def coil_maps(rng: np.random.Generator, width: int) -> np.ndarray:
    """(coils, N, width) smooth sensitivities of coils on a ring around the (oversampled) FOV."""
    y, x = np.mgrid[-1 : 1 : N * 1j, -OVERSAMPLING : OVERSAMPLING : width * 1j]
    maps = []
    for c in range(COILS):
        angle = 2 * np.pi * c / COILS
        cy, cx = 1.3 * np.sin(angle), 1.3 * np.cos(angle)
        distance2 = (y - cy) ** 2 + (x - cx) ** 2
        maps.append(
            np.exp(-distance2 / 1.5)
            * np.exp(1j * (angle + 0.4 * (x * np.cos(angle) - y * np.sin(angle))))
        )
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0)).max()


HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <measurementInformation>
    <patientPosition>HFS</patientPosition>
    <protocolName>gadgetron-diffusion example</protocolName>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>simulated</systemVendor>
    <systemFieldStrength_T>3.0</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>127740000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{nx_os}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_os}</x><y>{fov}</y><z>{slice}</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov}</x><y>{fov}</y><z>{slice}</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_0><minimum>0</minimum><maximum>{nx_os_max}</maximum><center>{n}</center></kspace_encoding_step_0>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{n_max}</maximum><center>{n_half}</center></kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
    <parallelImaging>
      <accelerationFactor>
        <kspace_encoding_step_1>{r}</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2>
      </accelerationFactor>
      <calibrationMode>embedded</calibrationMode>
    </parallelImaging>
  </encoding>
</ismrmrdHeader>
"""


def header_xml() -> str:
    return HEADER.format(
        coils=COILS,
        n=N,
        n_max=N - 1,
        n_half=N // 2,
        nx_os=OVERSAMPLING * N,
        nx_os_max=OVERSAMPLING * N - 1,
        fov=FOV_MM,
        fov_os=OVERSAMPLING * FOV_MM,
        slice=SLICE_MM,
        r=ACCELERATION,
    )


def acquisition(data: np.ndarray, counter: int, line: int, flags: list[int]) -> ismrmrd.Acquisition:
    acq = ismrmrd.Acquisition.from_array(data.astype(np.complex64))
    acq.version = 1
    acq.scan_counter = counter
    acq.acquisition_time_stamp = 1000 + 10 * counter
    acq.center_sample = data.shape[1] // 2
    acq.sample_time_us = DWELL_US
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)
    acq.idx.kspace_encode_step_1 = line
    for flag in flags:
        acq.set_flag(flag)
    return acq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=Path, default=VOLUME)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    rng = np.random.default_rng(20240601)
    width = OVERSAMPLING * N
    image = np.zeros((N, width), dtype=np.complex128)
    image[:, (width - N) // 2 : (width + N) // 2] = brain_slice(args.volume) * smooth_phase(rng)
    coils = coil_maps(rng, width) * image
    kspace = fft2c(torch.from_numpy(coils.astype(np.complex64))).numpy()
    mixing = np.eye(COILS) + 0.15 * (
        rng.normal(size=(COILS, COILS)) + 1j * rng.normal(size=(COILS, COILS))
    )

    def noise(samples: int) -> np.ndarray:
        white = rng.normal(scale=NOISE_STD, size=(2, COILS, samples))
        return mixing @ (white[0] + 1j * white[1])

    mask = equispaced_columns_mask((1, N), ACCELERATION, ACS)[0].numpy() > 0
    regular = equispaced_columns_mask((1, N), ACCELERATION, 0)[0].numpy() > 0
    acs = np.zeros(N, dtype=bool)
    acs[N // 2 - ACS // 2 : N // 2 + ACS // 2] = True
    lines = np.flatnonzero(mask)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.unlink(missing_ok=True)
    with ismrmrd.Dataset(str(args.output), "dataset", create_if_needed=True) as dataset:
        dataset.write_xml_header(header_xml())
        dataset.append_acquisition(
            acquisition(noise(width), 0, 0, [ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
        )
        for counter, line in enumerate(lines, start=1):
            flags = []
            if acs[line]:
                flags.append(
                    ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
                    if regular[line]
                    else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
                )
            if counter == 1:
                flags += [ismrmrd.ACQ_FIRST_IN_SLICE, ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1]
            if counter == len(lines):
                flags += [
                    ismrmrd.ACQ_LAST_IN_SLICE,
                    ismrmrd.ACQ_LAST_IN_ENCODE_STEP1,
                    ismrmrd.ACQ_LAST_IN_MEASUREMENT,
                ]
            dataset.append_acquisition(
                acquisition(kspace[:, line] + noise(width), counter, int(line), flags)
            )
    print(
        f"{args.output}: {len(lines)} of {N} lines ({N / len(lines):.2f}x), {args.output.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
