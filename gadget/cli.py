"""``gadgetron-diffusion``: offline replay of ISMRMRD files and an MRD streaming server.

    gadgetron-diffusion replay IN.h5 OUT.h5 [--png DIR] [--overwrite] [recon options]
    gadgetron-diffusion serve --port 9002 [recon options]
    gadgetron-diffusion train --data DIR --out STEM [training options]
    gadgetron-diffusion calibrate --data DIR --checkpoint default --out STEM [--masks random:4 ...]

Recon options map one to one onto the gadget's XML properties (see ``gadget.config``).
``train`` hands its arguments to ``diffusion_core.training.cli`` (``python -m diffusion_core.training``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gadget.config import SAMPLERS, ConfigError, GadgetConfig

log = logging.getLogger("gadget.cli")


def _recon_options(parser: argparse.ArgumentParser) -> None:
    defaults = GadgetConfig()
    group = parser.add_argument_group("reconstruction (the gadget's XML properties)")
    group.add_argument("--sampler", choices=SAMPLERS, default=defaults.sampler)
    group.add_argument(
        "--nfe", type=int, default=defaults.nfe, help="network evaluations per sample"
    )
    group.add_argument(
        "--samples", type=int, default=defaults.num_samples, help="posterior samples per slice"
    )
    group.add_argument(
        "--cg-iters",
        type=int,
        default=defaults.cg_iters,
        help="CG iterations per data-consistency step",
    )
    group.add_argument(
        "--checkpoint",
        default=defaults.checkpoint,
        help="prior .safetensors (default: the shipped prior)",
    )
    group.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    group.add_argument(
        "--bf16", action="store_true", help="network under bfloat16 autocast (faster on some CPUs)"
    )
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument(
        "--coil-compression",
        type=int,
        default=defaults.coil_compression,
        help="virtual coils (0: off)",
    )
    group.add_argument(
        "--complex", action="store_true", help="also send the complex posterior mean"
    )
    group.add_argument(
        "--no-uncertainty", action="store_true", help="do not send the posterior std"
    )
    group.add_argument(
        "--series",
        type=int,
        default=defaults.image_series_index,
        help="image series index of the mean",
    )


def _config(args: argparse.Namespace) -> GadgetConfig:
    return GadgetConfig(
        sampler=args.sampler,
        nfe=args.nfe,
        num_samples=args.samples,
        cg_iters=args.cg_iters,
        checkpoint=args.checkpoint,
        device=args.device,
        bf16=args.bf16,
        seed=args.seed,
        coil_compression=args.coil_compression,
        send_complex=args.complex,
        send_uncertainty=not args.no_uncertainty,
        image_series_index=args.series,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gadgetron-diffusion", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay", help="reconstruct an ISMRMRD HDF5 file offline")
    replay.add_argument("input", type=Path, help="ISMRMRD HDF5 input")
    replay.add_argument("output", type=Path, help="HDF5 output (created or appended to)")
    replay.add_argument(
        "--in-group", default="dataset", help="input dataset group (default: dataset)"
    )
    replay.add_argument("--out-group", default="dataset", help="output group (default: dataset)")
    replay.add_argument("--overwrite", action="store_true", help="replace an existing output group")
    replay.add_argument("--png", type=Path, metavar="DIR", help="also write PNG previews into DIR")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    _recon_options(replay)
    serve = commands.add_parser(
        "serve", help="MRD streaming server (gadgetron_ismrmrd_client, FIRE clients)"
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default: all)")
    serve.add_argument("--port", type=int, default=9002, help="TCP port (default: 9002)")
    _recon_options(serve)
    from gadget.calibrate import add_parser as add_calibrate

    add_calibrate(commands)
    commands.add_parser(
        "train", add_help=False, help="train a prior (see: gadgetron-diffusion train --help)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from diffusion_core.training.cli import main as train_main

        train_main(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "calibrate":
        from gadget.calibrate import main as calibrate_main

        return calibrate_main(args)
    try:
        config = _config(args)
    except ConfigError as error:
        print(f"gadgetron-diffusion: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from gadget.server import serve

        serve(args.host, args.port, config)
        return 0
    return _replay(args, config)


def _replay(args: argparse.Namespace, config: GadgetConfig) -> int:
    from gadget.replay import ReplayError, replay

    try:
        result = replay(
            args.input,
            args.output,
            config,
            in_group=args.in_group,
            out_group=args.out_group,
            overwrite=args.overwrite,
            png_dir=args.png,
            progress=not args.no_progress,
        )
    except (ReplayError, ValueError, OSError) as error:
        print(f"gadgetron-diffusion: {error}", file=sys.stderr)
        return 2
    run = result.run
    print(
        f"{result.acquisitions} acquisitions -> {run.slices_done} slices, {run.images_sent} images "
        f"in {result.output}:/{result.group}"
        + (f", {len(result.previews)} PNGs in {args.png}" if args.png else "")
    )
    for failure in run.failed:
        print(f"failed: {failure}", file=sys.stderr)
    if run.stream_error:
        print(f"stream error: {run.stream_error}", file=sys.stderr)
    return 0 if run.ok and run.slices_done else 1


if __name__ == "__main__":
    raise SystemExit(main())
