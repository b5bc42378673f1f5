"""The suite's own lines on stderr (logs, notes, warnings, errors); stdout is kept for results."""

import contextlib
import os
import sys
import threading


# Control characters (tab, newline, carriage return, terminal escapes) as \t, \n, \r or \xNN, a backslash
# doubled, and each byte of a name that is not UTF-8 (Python holds byte b as the surrogate U+DC00 + b) as \xNN.
ESCAPES = {0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"} | {
    code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F] if code not in (0x09, 0x0A, 0x0D)} | {
    0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)}


def escape(name):
    """A file name as printable text on one line: it can never break a tab-separated line nor drive a terminal."""
    return name.translate(ESCAPES)


def log(message):
    """One line of progress or log on stderr, flushed so it shows while the work goes on; escaped as names are."""
    print(escape(message), file=sys.stderr, flush=True)


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
    """Run the block with file descriptor 2 read through a pipe, passing on every line that does not match notice.

    C++ libraries write to the descriptor itself, past sys.stderr, before any setting of theirs can quiet them.
    Lines are passed on as they arrive (a thread reads the pipe); a line written just before the process
    aborts can still be lost. Python's own writes during the block go the same way, in order. The block must
    not start child processes: they would inherit the pipe and keep it open.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    reader, writer = os.pipe()

    def forward():
        with os.fdopen(reader, "rb") as lines:
            for line in lines:
                if not notice.match(line.decode(errors="replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    os.dup2(writer, 2)
    os.close(writer)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # Closes the pipe's last writer, so the reader sees its end.
        thread.join()
        os.close(saved)
