"""``cimsim lm-eval ARGS``: lm-evaluation-harness's own command line, with cimsim's model type
registered, so ``--model cimsim --model_args pretrained=...,card=pcm,sigma=1.0,chip=3`` evaluates
a programmed chip (:mod:`cimsim.runs.harness_model`). Everything after ``lm-eval`` is lm-eval's."""

from __future__ import annotations

import sys

import typer

from cimsim.core.errors import CimsimError


def lm_eval(ctx: typer.Context) -> None:
    """lm-evaluation-harness's command line with cimsim's model registered (--model cimsim)."""
    try:
        from cimsim.runs import harness_model  # noqa: F401  (registers the model)
    except ImportError:
        raise CimsimError("cimsim lm-eval needs lm-eval: pip install 'cimsim[lm-eval]'") from None
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    argv, sys.argv = sys.argv, ["lm-eval", *ctx.args]  # lm-eval reads sys.argv itself
    try:
        parser = HarnessCLI()
        try:
            args = parser.parse_args()
        except SystemExit as stop:  # argparse's --help and usage errors
            raise typer.Exit(stop.code if isinstance(stop.code, int) else 2) from None
        parser.execute(args)
    finally:
        sys.argv = argv
