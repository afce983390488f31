"""A fuzz campaign: the case of (category, family, seed) built, run and judged.

Categories: ``file-api`` (``gadget.replay.replay`` in a forked worker), ``file-cli``
(``python -m gadget.cli replay``), ``serve``, ``gadgetron-listen``, ``gadgetron-execute``.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fuzzkit import datasets
from fuzzkit.datasets import BaseFile
from fuzzkit.file_case import run_file_case
from fuzzkit.rules import Outcome
from fuzzkit.stream_case import Server, run_execute_case, run_server_case
from fuzzkit.stream_cases import GADGETRON_FAMILIES, MRD_FAMILIES, stream_case

FAMILIES = {
    "file-api": datasets.FILE_FAMILIES,
    "file-cli": datasets.FILE_FAMILIES,
    "serve": MRD_FAMILIES,
    "gadgetron-listen": GADGETRON_FAMILIES,
    "gadgetron-execute": GADGETRON_FAMILIES,
}


def small_prior(folder: Path) -> str:
    """A small random-weight prior in the project's checkpoint format (plumbing, not quality)."""
    stem = folder / "small_prior"
    if not stem.with_suffix(".safetensors").exists():
        import torch

        from diffusion_core.checkpoint import save_checkpoint
        from diffusion_core.denoiser import PreconditionedDenoiser
        from diffusion_core.networks.unet import UNet, UNetConfig

        torch.manual_seed(0)
        net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), attention_levels=()))
        save_checkpoint(
            stem, PreconditionedDenoiser(net), {"purpose": "fuzz tests (random weights)"}
        )
    return str(stem)


def cheap_properties(checkpoint: str) -> dict[str, str]:
    """The gadget's cheapest settings: 2 network evaluations, 1 sample, CPU."""
    return {"sampler": "dds", "nfe": "2", "num_samples": "1", "cg_iters": "2",
            "checkpoint": checkpoint, "device": "cpu"}  # fmt: skip


@dataclass
class Campaign:
    """Base files, settings and the long-running servers of one run (``close`` stops them)."""

    folder: Path
    bound_s: float = 10.0
    bases: list[BaseFile] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bases = datasets.base_files(self.folder / "base")
        self.properties = cheap_properties(small_prior(self.folder))

    def server(self, kind: str) -> Server:
        with self.lock:
            if kind not in self.servers:
                self.servers[kind] = Server(kind, self.folder, self.properties)
            return self.servers[kind]

    def run(self, category: str, family: str, seed: int) -> Outcome:
        base = self.bases[seed % len(self.bases)]
        if category.startswith("file-"):
            case = self.folder / f"{category}-{family}-{seed}"
            case.mkdir(exist_ok=True)
            try:
                name = datasets.mutated_file(base, family, seed, case / "in.h5")
                bound = self.bound_s * (4 if category == "file-cli" else 3)
                return run_file_case(name, case / "in.h5", case / "out.h5", category[5:],
                                     self.properties, bound)  # fmt: skip
            finally:
                shutil.rmtree(case, ignore_errors=True)
        protocol = "mrd" if category == "serve" else "gadgetron"
        payload = stream_case(protocol, family, base, self.properties, seed)
        if category == "gadgetron-execute":
            return run_execute_case(payload, self.bound_s)
        kind = "mrd" if category == "serve" else "gadgetron"
        return run_server_case(self.server(kind), payload, self.bound_s, self.bases[0].xml)

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
