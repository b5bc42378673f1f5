"""The suite's own lines on stderr (logs, notes, warnings, errors); stdout is kept for results."""

import contextlib
import os
import sys
import tempfile


def log(message):
    """One line of progress or log on stderr, flushed so it shows while the work goes on."""
    print(message, file=sys.stderr, flush=True)


def note(message):
    """Something the user may want to know that changes nothing they asked for."""
    log(f"note: {message}")


def warn(message):
    """Something skipped or changed so the rest could go on; the message says how many and what to do."""
    log(f"warning: {message}")


def progress(total, description, unit="img"):
    """A progress bar on stderr when it is a terminal, nothing otherwise (the step's own log line stands for it).

    Use as a context manager and call update(n) as work is done.
    """
    import tqdm  # Here: only runs that do long work pay for it.

    return tqdm.tqdm(total=total, desc=description, unit=unit, unit_scale=unit != "img", leave=False, disable=None,
                     file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def native_stderr_without(notice):
    """Run the block with file descriptor 2 captured; then write back every captured line not matching notice.

    C++ libraries write to the descriptor itself, past sys.stderr, before any setting of theirs can quiet them.
    Python's own writes during the block go the same way, so they come back too, in order.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not notice.match(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
