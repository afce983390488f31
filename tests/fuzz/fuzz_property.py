"""The property every fuzz case must have, run over hypothesis-chosen seeds of one family."""

from __future__ import annotations

from fuzzkit.campaign import Campaign
from fuzzkit.rules import Outcome
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st


def check_family(campaign: Campaign, category: str, family: str, examples: int) -> None:
    """Run ``examples`` cases (derandomised seeds) and assert that each ended within its bound,
    did not crash, lost nothing and said clearly what was wrong."""
    outcomes: list[Outcome] = []

    @settings(
        max_examples=examples, derandomize=True, deadline=None, database=None,
        phases=[Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(seed=st.integers(min_value=0, max_value=2**20))
    def one_case(seed: int) -> None:
        outcomes.append(campaign.run(category, family, seed))

    one_case()
    bad = [o.describe() for o in outcomes if o.failures()]
    assert not bad, f"{len(bad)} of {len(outcomes)} cases failed:\n" + "\n".join(bad)
