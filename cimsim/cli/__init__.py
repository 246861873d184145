"""The ``cimsim`` command line: parse options, build frozen configs, call the library.

One module per command group; this one builds the app from them and turns errors into exit codes.
Heavy imports (torch, transformers, matplotlib) happen inside the commands, so ``cimsim --help`` is
instant. Every user error ends as one line on stderr and exit code 2 (see :func:`main`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from cimsim.cli import (
    catalog,
    continual,
    devices,
    harness,
    plot,
    run,
    sensitivity,
    specsheet,
    sweep,
    tolerance,
    train,
    watermark,
)
from cimsim.cli.common import (
    EXIT_FAILURE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_CERTIFIED,
    EXIT_USAGE,
)
from cimsim.core.errors import CimsimError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CERTIFIED",
    "EXIT_USAGE",
    "app",
    "main",
]

app = typer.Typer(
    help="Simulate LoRA-adapted language models on noisy compute-in-memory (RRAM) tiles.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.command()(sweep.sweep)
app.command("compare")(sweep.sweep)
app.command()(tolerance.tolerance)
app.command()(sensitivity.sensitivity)
app.command("spec-sheet")(specsheet.spec_sheet)
app.command()(run.run)
app.command()(train.train)
app.command()(continual.continual)
app.command()(plot.plot)
app.command(
    "lm-eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(harness.lm_eval)
app.command()(catalog.models)
app.command()(catalog.tasks)
app.command("noise-models")(catalog.noise_models)
app.add_typer(devices.devices_app, name="devices")
app.add_typer(watermark.watermark_app, name="watermark")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one stderr line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # a scheduler's stop is a Ctrl-C: points kept
    try:
        result = app(args=argv, prog_name="cimsim", standalone_mode=False)
    except CimsimError as err:
        print(f"cimsim: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except typer.Exit as err:
        return err.exit_code
    except typer.TyperException as err:  # click's usage errors, as vendored by typer
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `cimsim`: the help is the answer
            print(message)
            return 0
        print(f"cimsim: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (typer.Abort, KeyboardInterrupt):
        print("cimsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a path that is a folder, a file, missing, unreadable, a full disk
        where = f": {err.filename}" if err.filename else ""
        print(f"cimsim: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except MemoryError:
        print(
            "cimsim: error: out of memory (fewer chips, points or a smaller batch)", file=sys.stderr
        )
        return EXIT_FAILURE
    except Exception as err:  # a case no check caught: one line, the traceback on request
        if os.environ.get("CIMSIM_DEBUG"):
            raise
        print(
            f"cimsim: internal error: {type(err).__name__}: {err} "
            "(set CIMSIM_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
