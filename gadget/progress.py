"""Progress bars of the replay: one over the acquisitions read, one over the sampler steps.

The acquisition bar counts an acquisition as soon as it is handed to the gadget and is redrawn
when a reconstruction starts, so it does not stand still at a stale count while the sampler
runs; the sampling bar (below it) moves with every sampler step of the slice being reconstructed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from diffusion_core.reconstruct import ReconProgress

T = TypeVar("T")


class ReplayProgress:
    """tqdm bars on stderr (none when ``enabled`` is false)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._acquisitions: Any = None
        self._sampling: Any = None

    def acquisitions(self, items: Iterable[T], total: int) -> Iterator[T]:
        """``items``, counted on the acquisition bar as each is handed on."""
        if not self.enabled:
            yield from items
            return
        from tqdm import tqdm

        self._acquisitions = tqdm(total=total, desc="acquisitions", unit="acq", position=0)
        for item in items:
            self._acquisitions.update(1)
            yield item

    def sampling(self, report: ReconProgress) -> None:
        """The reconstructor's progress callback: samples x steps of the current slice."""
        if not self.enabled:
            return
        from tqdm import tqdm

        total = report.num_samples * report.total_steps
        done = report.first_sample * report.total_steps + report.batch * report.step
        if self._sampling is None or done < self._sampling.n:
            self._close_sampling()
            if self._acquisitions is not None:
                self._acquisitions.refresh()
            self._sampling = tqdm(
                total=total, desc="sampling", unit="step", position=1, leave=False
            )
        self._sampling.update(done - self._sampling.n)

    def _close_sampling(self) -> None:
        if self._sampling is not None:
            self._sampling.close()
            self._sampling = None

    def close(self) -> None:
        self._close_sampling()
        if self._acquisitions is not None:
            self._acquisitions.close()
            self._acquisitions = None
