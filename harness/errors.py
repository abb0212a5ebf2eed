"""Exit codes, decided in one place for every `harness` command.

0  success
1  a failure while doing valid work (training crashed, data unreadable, disk full, run locked)
2  a usage error: the command line asks for something that cannot be done as written (bad option
   or value, unknown filter or suite, malformed expression, an expression that keeps nothing, no
   runs where runs were promised)
3  `harness compare` wrote its report without some runs another process held
130  interrupted (Ctrl-C)

argparse already exits with 2 for the errors it detects; `exit_code` maps the rest.
"""

from __future__ import annotations

USAGE, FAILURE, INTERRUPTED = 2, 1, 130


class UsageError(ValueError):
    """The command line is wrong; the message says which option and what was expected.

    The errors for bad user input in other modules (ExpressionError, PluginError, SuiteError,
    RecipeError, ReportError, EmptySelectionError) subclass it, so this module, imported by them,
    imports none of them: it stays at the bottom of the dependency order."""


def exit_code(error: BaseException) -> int:
    """The exit status for an exception that ended a command."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, SystemExit):
        code = error.code
        return code if isinstance(code, int) else (0 if code is None else FAILURE)
    return USAGE if isinstance(error, UsageError) else FAILURE
