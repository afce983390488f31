"""A fuzz harness over the gadget's three entry points (replay, ``serve``, the Gadgetron side).

Shared by the short property tests in ``tests/fuzz`` and the long run in ``benchmarks/fuzz.py``.
"""
