"""Command line: ``python -m registry list`` prints registered encoders as a table.

The tracking server comes from ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///mlflow.db``
in the working directory), as for every MLflow client.
"""

from __future__ import annotations

import argparse
import sys

from mlflow.exceptions import MlflowException

from registry.listing import encoder_versions, format_json, format_markdown, format_table
from registry.loading import ModelNotFoundError

FORMATS = {"table": format_table, "markdown": format_markdown, "json": format_json}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m registry", description="Inspect the encoders in the MLflow model registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="List encoder versions with aliases, selection scores and lineage.")
    listing.add_argument("--model", default="", help="One registered name; empty: every unet-encoder-* model.")
    listing.add_argument("--format", choices=sorted(FORMATS), default="table", help="Output format.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        rows = encoder_versions(model=args.model or None)
    except (ModelNotFoundError, MlflowException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(FORMATS[args.format](rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
