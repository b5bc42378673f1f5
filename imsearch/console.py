"""The suite's own lines on stderr (logs, notes, warnings, errors); stdout is kept for results."""

import sys


def log(message):
    """One line of progress or log on stderr, flushed so it shows while the work goes on."""
    print(message, file=sys.stderr, flush=True)


def note(message):
    """Something the user may want to know that changes nothing they asked for."""
    log(f"note: {message}")


def warn(message):
    """Something skipped or changed so the rest could go on; the message says how many and what to do."""
    log(f"warning: {message}")
