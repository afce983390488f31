"""Suite-wide hooks.

* Tests marked ``gpu`` are skipped where no CUDA device is present.
* Tests marked ``shared_data`` read ``../shared/data`` (real k-space and volumes that are not in the
  repository; ``GADGETRON_DIFFUSION_DATA`` names another folder). Where it is absent they are
  skipped with that reason, unless ``GADGETRON_DIFFUSION_REQUIRE_DATA=1`` (set by ``.ci/run`` where
  the data exist), which turns the absence into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(
    os.environ.get("GADGETRON_DIFFUSION_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is present")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
    if SHARED_DATA.is_dir():
        return
    needing = [item for item in items if "shared_data" in item.keywords]
    if needing and os.environ.get("GADGETRON_DIFFUSION_REQUIRE_DATA") == "1":
        raise pytest.UsageError(
            f"{len(needing)} tests need the data folder {SHARED_DATA}, which does not exist "
            "(GADGETRON_DIFFUSION_REQUIRE_DATA=1 forbids skipping them)"
        )
    skip_data = pytest.mark.skip(
        reason=f"needs the data folder {SHARED_DATA} (../shared/data beside the repository, or "
        "GADGETRON_DIFFUSION_DATA); it is absent"
    )
    for item in needing:
        item.add_marker(skip_data)
