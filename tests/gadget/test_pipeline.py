"""The run loop: an error in the stream itself passes the unread rest downstream unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import ismrmrd
import torch

from gadget.config import GadgetConfig
from gadget.pipeline import OncePerSource, RunSummary, _run


class _Connection:
    def __init__(self, items: list[object]) -> None:
        self.items = items
        self.sent: list[object] = []

    def __iter__(self) -> Iterator[object]:
        return iter(self.items)

    def send(self, item: object) -> None:
        self.sent.append(item)


def _broken_after_two(items: Iterator[object], summary: RunSummary) -> Iterator[object]:
    next(items), next(items)  # the stream stage consumed two items, then failed
    raise ValueError("stream stage broke")
    yield  # pragma: no cover  (makes this a generator)


def test_stream_error_passes_the_rest_on_and_is_recorded() -> None:
    connection = _Connection(["a", "b", "c", "d", "e"])
    summary = _run(connection, _broken_after_two, reconstructor=None, maker=None)  # type: ignore[arg-type]
    assert connection.sent == ["c", "d", "e"]
    assert summary.stream_error == "ValueError: stream stage broke"
    assert not summary.ok and summary.images_sent == 0


def test_pass_on_stops_quietly_when_downstream_is_gone() -> None:
    from gadget.pipeline import pass_on

    sent: list[object] = []

    def send(item: object) -> None:
        if len(sent) == 2:
            raise ConnectionError("downstream closed")
        sent.append(item)

    pass_on(iter(range(10)), send)
    assert sent == [0, 1]


def test_prior_cache_loads_each_prior_once_and_shares_it():
    from gadget.recon import PriorCache

    cache = PriorCache()
    config = GadgetConfig(device="cpu")
    first = cache.get(config, torch.device("cpu"))
    assert cache.get(GadgetConfig(device="cpu", nfe=3), torch.device("cpu")) is first
    assert len(cache) == 1
    other = cache.get(GadgetConfig(device="cpu", bf16=True), torch.device("cpu"))
    assert other is not first and len(cache) == 2


def test_failed_sources_are_all_sent_although_freed_items_reuse_their_ids():
    # Acquisitions freed after they are sent hand their id to the next ones; a set of ids
    # once took those for "already sent" and dropped a later failed slice's lines.
    sent: list[int] = []
    once = OncePerSource(lambda item: sent.append(item.scan_counter))
    for counter in range(200):
        acquisition = ismrmrd.Acquisition()
        acquisition.scan_counter = counter
        once(acquisition)
        del acquisition
    assert sent == list(range(200))


def test_a_recon_data_failing_in_several_slices_goes_downstream_once():
    sent: list[object] = []
    once = OncePerSource(sent.append)
    first, second = object(), object()
    for item in (first, first, first, second, second):  # the slices of one ReconData in turn
        once(item)
    assert sent == [first, second]
