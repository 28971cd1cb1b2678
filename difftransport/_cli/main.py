"""The ``difftransport`` command line.

    difftransport run CONFIG.toml [--out DIR] [--chunk K] [--devices D] [--workers N] [--quiet] [--wait]
                      [--coordinator HOST:PORT --num-processes N --process-id I | --distributed]
    difftransport plot RUN_DIR
    difftransport info
    difftransport fit DATA.csv [--model hln|alpha|cubic|kawabata|mccann] [--units e2h|siemens] [--out DIR]
    difftransport scale CONFIG.toml [--out DIR] [--refit] [--wait] [--quiet]

Multi-host runs: start the same ``run`` command on every host with the coordinator's address, the number of
processes and each process's id (flags, or the environment variables DIFFTRANSPORT_COORDINATOR,
DIFFTRANSPORT_NUM_PROCESSES, DIFFTRANSPORT_PROCESS_ID); ``--distributed`` lets JAX detect a cluster
(SLURM, Open MPI, ...) instead. All processes must see the same run directory.

A run holds a lock on its run directory: a second ``run`` on the same directory refuses (or, with
``--wait``, waits). Errors a user can fix print one line ``error: ...`` on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _distributed(args) -> None:
    """Join the processes with jax.distributed before any JAX computation."""
    coordinator = args.coordinator or os.environ.get("DIFFTRANSPORT_COORDINATOR")
    count = args.num_processes or os.environ.get("DIFFTRANSPORT_NUM_PROCESSES")
    pid = args.process_id if args.process_id is not None else os.environ.get("DIFFTRANSPORT_PROCESS_ID")
    if not (coordinator or args.distributed):
        if count is not None or pid is not None:
            raise SystemExit("error: --num-processes/--process-id need --coordinator HOST:PORT (or --distributed)")
        return
    import jax

    # CPU processes exchange the completion masks through gloo collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.distributed and not coordinator:
        jax.distributed.initialize()
        return
    if count is None or pid is None:
        raise SystemExit("error: --coordinator needs --num-processes and --process-id")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(count), process_id=int(pid))


def _cmd_run(args) -> int:
    _distributed(args)
    import jax

    from .. import runs

    try:
        store = runs.run(args.config, args.out, chunk=args.chunk, devices=args.devices, workers=args.workers,
                         quiet=args.quiet, wait=args.wait)
    except (runs.ConfigError, runs.ConfigMismatch, runs.DirectoryLocked, runs.RunDirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a failed write (disk full, permissions): the finished chunks are complete files
        print(f"error: {_os_error(exc)}; the finished chunks are saved: fix this and rerun the same command to "
              "resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished chunks are saved; rerun the same command to resume.", file=sys.stderr)
        return 130
    if jax.process_index() == 0:
        summary = json.loads((store.path / "summary.json").read_text())
        for name, entry in summary.items():
            for obs, stats in entry["observables"].items():
                mean = stats["mean"]
                shown = mean if not isinstance(mean, list) else (f"[{len(mean)} values]" if len(mean) > 6 else mean)
                print(f"{name}: <{obs}> = {shown}")
        print(f"run directory: {store.path}")
        print(f"figure: {store.path / 'figures' / 'overview.png'}")
    return 0


def _os_error(exc: OSError) -> str:
    """One line for an OSError: what failed, and on which file."""
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename else what


def _cmd_plot(args) -> int:
    import pathlib

    from .._runs.plots import plot_run
    from .._runs.store import RunDirectoryError, check_npz, stored_config

    run_dir = pathlib.Path(args.run_dir)
    try:
        if not run_dir.is_dir():
            raise RunDirectoryError(
                f"{run_dir} is not a run directory: {'it is a file' if run_dir.exists() else 'it does not exist'}")
        record = stored_config(run_dir)
        if record is None:
            raise RunDirectoryError(f"{run_dir} is not a run directory: it has no config.json")
        for name in record["config"].get("ensembles", {}):
            path = run_dir / "results" / f"{name}.npz"
            if path.exists():
                try:
                    check_npz(path)
                except RunDirectoryError as exc:
                    raise RunDirectoryError(f"{exc}; rerun the `difftransport run` command of this directory: it "
                                            "rewrites the results from the chunks") from None
        paths = plot_run(run_dir)
    except (FileNotFoundError, RunDirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"figure: {path}")
    return 0


def _cmd_info(args) -> int:
    from .._runs.runner import environment

    env = environment()
    width = max(len(k) for k in env)
    for key, value in env.items():
        print(f"{key:{width}s}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="difftransport", description="Differentiable quantum transport (JAX).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) the ensembles of a TOML config")
    run.add_argument("config", help="TOML config (see docs/ensembles.md)")
    run.add_argument("--out", help="run directory (default: out/<config name>)")
    run.add_argument("--chunk", type=int, help="realizations per call, stored as a unit (overrides run.chunk)")
    run.add_argument("--devices", type=int, help="local devices per process to shard over (default: all)")
    run.add_argument("--workers", type=int, help="chunks computed at once in threads (default: one per core on a "
                                                 "single CPU device, else 1; no result depends on it)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--wait", action="store_true",
                     help="if another run holds the run directory, wait for it instead of refusing")
    run.add_argument("--coordinator", help="HOST:PORT of process 0 for multi-process runs")
    run.add_argument("--num-processes", type=int, help="number of processes")
    run.add_argument("--process-id", type=int, help="this process's id (0 .. N-1)")
    run.add_argument("--distributed", action="store_true", help="let jax.distributed detect the cluster")
    run.set_defaults(func=_cmd_run)

    plot = sub.add_parser("plot", help="redraw the figures of a run directory")
    plot.add_argument("run_dir")
    plot.set_defaults(func=_cmd_plot)

    info = sub.add_parser("info", help="print devices and versions")
    info.set_defaults(func=_cmd_info)

    from . import fit as _cli_fit
    from . import scale as _cli_scale

    fit = sub.add_parser("fit", help="fit magnetoconductance data (CSV) with HLN and related theories")
    _cli_fit.add_arguments(fit)
    fit.set_defaults(func=_cli_fit.main)

    scale = sub.add_parser("scale", help="run a scaling study (transfer-matrix FSS or beta(g)) from a TOML config")
    _cli_scale.add_arguments(scale)
    scale.set_defaults(func=_cli_scale.main)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
