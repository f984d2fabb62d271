"""The ``birdsweep`` command: data generation, export and inference sub-commands.

Training is ``python run.py`` (Hydra); see the README.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _demo_data(args: argparse.Namespace) -> int:
    from birdsweep.data.demo import generate_demo_dataset

    out = generate_demo_dataset(
        args.out, seed=args.seed, n_classes=args.classes, noise=args.noise, overwrite=args.overwrite
    )
    print(f"demo data set written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``birdsweep`` command."""
    parser = argparse.ArgumentParser(prog="birdsweep", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a synthetic BirdCLEF 2025-layout data set")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--classes", type=int, default=24, help="number of species (default 24)")
    p.add_argument("--noise", choices=["moderate", "hard"], default="moderate", help="soundscape noise level")
    p.add_argument("--overwrite", action="store_true", help="rewrite an existing data set")
    p.set_defaults(func=_demo_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``birdsweep`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        logging.getLogger("birdsweep").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
