"""The ``napari-patchdx`` command.

Subcommands: ``run`` (the whole pipeline on a configuration), ``sample`` / ``train`` / ``infer`` / ``evaluate``
(one stage: on a configuration's run directory, or on explicit files where that is natural), ``report``,
``demo``, ``synth``, ``info`` and ``froc``. Long work shows a progress bar driven by the job's progress reports.
The parser is :mod:`.parser`; the pipeline commands are in :mod:`.stages`, the data commands in :mod:`.data`, the
options built from the stages' settings objects (and ``--mpp``, the slides' microns per pixel, on every command
that reads slides) in :mod:`.options`.

Exit codes: 0 success; 1 a processing error (a bad input file, missing metadata, an unwritable output ...: the
message names the file and the problem); 2 a usage or configuration error (unknown option or key, bad value,
missing input files, a stage whose predecessor is not done); 130 interrupted by the user (Ctrl-C: outputs are
written atomically and stages record that they did not finish, so nothing half-done is taken for complete, and the
next run resumes or redoes it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import ConfigError, PatchdxError
from .options import UsageError
from .parser import build_parser

__all__ = ["UsageError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-patchdx`` command; returns the exit code.

    Unless the environment says otherwise, OpenMP threads (torch's CPU kernels) wait passively
    (``OMP_WAIT_POLICY=PASSIVE``, read when torch is first imported, which the subcommands do lazily): on a
    machine whose cores are shared with other work, spinning threads made CPU inference up to 10x slower, at a
    cost of a few percent on an idle machine.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError) as exc:  # a usage or configuration problem: nothing was done
        print(f"napari-patchdx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (PatchdxError, OSError) as exc:  # bad input, or a file in the way / unwritable output
        print(f"napari-patchdx {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("napari-patchdx: interrupted", file=sys.stderr)
        return 130
