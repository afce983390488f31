"""``gadgetron-diffusion``: offline replay of ISMRMRD files and an MRD streaming server.

    gadgetron-diffusion replay IN.h5 OUT.h5 [--png DIR] [--noise NOISE.h5] [--overwrite] [recon options]
    gadgetron-diffusion serve [--host 127.0.0.1] [--port 9002] [--checkpoint P ...] [--noise N.h5] [recon options]
    gadgetron-diffusion train --data DIR --out STEM [training options]
    gadgetron-diffusion calibrate --data DIR --checkpoint default --out STEM [--masks random:4 ...]

Recon options map one to one onto the gadget's XML properties (see ``gadget.config``).
``train`` hands its arguments to ``diffusion_core.training.cli`` (``python -m diffusion_core.training``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gadget.config import OUTPUT_TYPES, SAMPLERS, ConfigError, GadgetConfig

log = logging.getLogger("gadget.cli")


def _recon_options(parser: argparse.ArgumentParser, checkpoint_help: str | None = None) -> None:
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
        "--cg-iters-inside",
        type=int,
        default=defaults.cg_iters_inside,
        help="CG iterations for line masks with the object inside the FOV (0: --cg-iters)",
    )
    group.add_argument(
        "--cg-iters-cut",
        type=int,
        default=defaults.cg_iters_cut,
        help="CG iterations for line masks with the object cut by the FOV on both sides "
        "(0: --cg-iters)",
    )
    group.add_argument(
        "--cg-select",
        default=defaults.cg_select,
        metavar="N,M",
        help="choose cg_iters per slice among these (e.g. 5,10) by held-back k-space; "
        "2D masks only (default: off)",
    )
    group.add_argument(
        "--cg-select-nfe",
        type=int,
        default=defaults.cg_select_nfe,
        help="NFE of each candidate's trial sample for --cg-select",
    )
    group.add_argument(
        "--map-sets",
        type=int,
        choices=(0, 1, 2),
        default=defaults.map_sets,
        help="ESPIRiT map sets: 0 auto (a second set where the tissue folds), 1, or 2",
    )
    if checkpoint_help is None:
        group.add_argument(
            "--checkpoint",
            default=defaults.checkpoint,
            help="prior .safetensors (default: the shipped prior)",
        )
    else:
        group.add_argument("--checkpoint", action="append", default=[], help=checkpoint_help)
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
        "--linear-width",
        action="store_true",
        help="with --samples 1: send the calibrated linear-Gaussian width as the std",
    )
    group.add_argument(
        "--series",
        type=int,
        default=defaults.image_series_index,
        help="image series index of the mean",
    )
    group.add_argument(
        "--output-type",
        choices=OUTPUT_TYPES,
        default=defaults.output_type,
        help="pixel type of the mean and std: float (data units) or uint16/int16 (display-ready)",
    )
    group.add_argument(
        "--max-intensity",
        type=int,
        default=defaults.max_intensity,
        help="largest stored value of uint16/int16 output (default 4095, 12 bits)",
    )


def _config(args: argparse.Namespace) -> GadgetConfig:
    return GadgetConfig(
        sampler=args.sampler,
        nfe=args.nfe,
        num_samples=args.samples,
        cg_iters=args.cg_iters,
        cg_iters_inside=args.cg_iters_inside,
        cg_iters_cut=args.cg_iters_cut,
        cg_select=args.cg_select,
        cg_select_nfe=args.cg_select_nfe,
        checkpoint=args.checkpoint,
        device=args.device,
        bf16=args.bf16,
        seed=args.seed,
        coil_compression=args.coil_compression,
        send_complex=args.complex,
        send_uncertainty=not args.no_uncertainty,
        linear_width=args.linear_width,
        map_sets=args.map_sets,
        image_series_index=args.series,
        output_type=args.output_type,
        max_intensity=args.max_intensity,
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
    replay.add_argument("--no-progress", action="store_true", help="no progress bars")
    replay.add_argument(
        "--noise",
        type=Path,
        metavar="NOISE.h5",
        help="ISMRMRD file of noise scans (a separate noise measurement), used when the input "
        "has none of its own",
    )
    _recon_options(replay)
    _serve_options(commands)
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
    if args.command == "serve":
        return _serve(args)
    if args.command == "calibrate":
        from gadget.calibrate import main as calibrate_main

        return calibrate_main(args)
    try:
        config = _config(args)
    except ConfigError as error:
        print(f"gadgetron-diffusion: {error}", file=sys.stderr)
        return 2
    return _replay(args, config)


def _serve_options(commands: argparse._SubParsersAction) -> None:
    from gadget.mrd_config import BUILTIN_NAMES, ServerLimits

    limits = ServerLimits()
    serve = commands.add_parser(
        "serve",
        help="MRD streaming server (python-ismrmrd-server / FIRE clients, gadgetron_ismrmrd_client)",
        description="MRD streaming server. CONFIG_FILE names it knows: "
        + ", ".join(BUILTIN_NAMES)
        + " (the command-line properties below; '.xml' may be appended) and those given with "
        "--config-name. CONFIG_TEXT and FIRE JSON parameters are laid over the command-line "
        "properties, within the --max-* caps.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=9002, help="TCP port (default: 9002)")
    serve.add_argument(
        "--config-name",
        action="append",
        default=[],
        metavar="NAME=FILE.xml",
        help="another configuration clients may name (a <configuration> or a Gadgetron chain)",
    )
    serve.add_argument(
        "--noise",
        type=Path,
        metavar="NOISE.h5",
        help="ISMRMRD noise measurement used by sessions whose stream has no noise scan",
    )
    serve.add_argument(
        "--return-unprocessed",
        action="store_true",
        help="send back acquisitions/waveforms that are not reconstructed (FIRE clients read "
        "them; gadgetron_ismrmrd_client cannot)",
    )
    serve.add_argument(
        "--refuse-unknown-config",
        action="store_true",
        help="end a session whose CONFIG_FILE names no configuration of this server (default: "
        "use the default configuration and warn, as python-ismrmrd-server does)",
    )
    caps = serve.add_argument_group("limits per session")
    caps.add_argument("--idle-timeout", type=float, default=limits.idle_timeout_s, metavar="S")
    caps.add_argument(
        "--stall-timeout",
        type=float,
        default=limits.stall_timeout_s,
        metavar="S",
        help="longest pause inside one message before it is reported incomplete",
    )
    caps.add_argument("--max-sessions", type=int, default=limits.max_sessions)
    caps.add_argument("--max-nfe", type=int, default=limits.max_nfe)
    caps.add_argument("--max-samples", type=int, default=limits.max_num_samples)
    caps.add_argument("--max-cg-iters", type=int, default=limits.max_cg_iters)
    caps.add_argument("--max-matrix", type=int, default=limits.max_matrix)
    caps.add_argument("--max-channels", type=int, default=limits.max_channels)
    _recon_options(
        serve,
        checkpoint_help="a prior clients may choose, by file stem (repeatable; the first is the "
        "default; none: the shipped prior only)",
    )


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from diffusion_core.checkpoint import checkpoint_paths, read_card
    from gadget.config import config_from_text
    from gadget.mrd_config import ServerConfig, ServerLimits, SessionError, session_config
    from gadget.mrd_framing import ConfigTextMessage
    from gadget.mrd_input import InputError
    from gadget.noise_file import read_noise_file
    from gadget.server import serve

    try:
        default = dataclasses.replace(_config(args), checkpoint=(args.checkpoint or [""])[0])
        limits = ServerLimits(
            max_nfe=args.max_nfe,
            max_num_samples=args.max_samples,
            max_cg_iters=args.max_cg_iters,
            max_matrix=args.max_matrix,
            max_channels=args.max_channels,
            max_sessions=args.max_sessions,
            idle_timeout_s=args.idle_timeout,
            stall_timeout_s=args.stall_timeout,
        )
        base = ServerConfig(default, tuple(args.checkpoint), limits=limits)
        named = []
        for item in args.config_name:
            name, _, path = item.partition("=")
            if not name or not path:
                raise ConfigError(f"--config-name {item!r}: expected NAME=FILE.xml")
            text = Path(path).read_text(encoding="utf-8")
            config_from_text(text)  # a clear error for a file that is not a configuration
            named.append((name, session_config(base, ConfigTextMessage(text)).config))
        server_config = dataclasses.replace(
            base,
            named=tuple(named),
            return_unprocessed=args.return_unprocessed,
            refuse_unknown_names=args.refuse_unknown_config,
        )
        for path in server_config.allowed_checkpoints:
            read_card(path)  # names the missing or malformed file now, not at a client's session
            weights, _ = checkpoint_paths(path)
            if not weights.is_file():
                raise ConfigError(f"--checkpoint {path}: weights file {weights} not found")
        noise = read_noise_file(args.noise) if args.noise else []
    except (ConfigError, SessionError, InputError, ValueError, OSError) as error:
        print(f"gadgetron-diffusion serve: {error}", file=sys.stderr)
        return 2
    try:
        serve(args.host, args.port, server_config, noise)
    except (ValueError, RuntimeError, OSError) as error:  # default prior, device, address
        print(f"gadgetron-diffusion serve: {error}", file=sys.stderr)
        return 2
    return 0


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
            noise=args.noise,
        )
    except (ReplayError, ValueError, OSError) as error:
        print(f"gadgetron-diffusion: {error}", file=sys.stderr)
        return 2
    run = result.run
    print(
        f"{result.acquisitions} acquisitions -> {describe_image_sets(result.image_sets)}, "
        f"{run.images_sent} images in {result.output}:/{result.group}"
        + (f", {len(result.previews)} PNGs in {args.png}" if args.png else "")
    )
    for line in result.kept:
        print(f"kept: {line}")
    for line in result.left_out:
        print(f"left out: {line}")
    for failure in run.failed:
        print(f"failed: {failure}", file=sys.stderr)
    for skipped in result.unreadable:
        print(f"skipped: {skipped}", file=sys.stderr)
    if run.stream_error:
        print(f"stream error: {run.stream_error}", file=sys.stderr)
    if not run.slices_done and not run.failed and not run.stream_error:
        print(
            f"gadgetron-diffusion: {args.input}: no slice reconstructed; expected imaging "
            "acquisitions (not only noise scans or unreadable lines)",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def describe_image_sets(keys: Sequence[tuple[int, ...]]) -> str:
    """``2 image sets (slice 0; repetition 0, 1)``: how many, and the counters that tell them
    apart (slice always; the others where they are not all 0)."""
    names = ("slice", "contrast", "phase", "repetition", "set", "average")
    parts = []
    for position, name in enumerate(names):
        values = sorted({key[position] for key in keys})
        if name != "slice" and values in ([], [0]):
            continue
        shown = ", ".join(map(str, values[:6])) + (
            f", ... ({len(values)})" if len(values) > 6 else ""
        )
        parts.append(f"{name} {shown}")
    noun = "image set" if len(keys) == 1 else "image sets"
    return f"{len(keys)} {noun}" + (f" ({'; '.join(parts)})" if keys else "")


if __name__ == "__main__":
    raise SystemExit(main())
