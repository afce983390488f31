"""The ISMRMRD / Gadgetron side of gadgetron-diffusion: handlers, stream assembly, images, CLI.

The only package that imports ismrmrd and gadgetron; all maths is in ``diffusion_core``.
Entry points: :mod:`gadget.handlers` (Gadgetron), :mod:`gadget.cli` (``gadgetron-diffusion``),
:mod:`gadget.listen` (Gadgetron ``<connect>`` mode).
"""
