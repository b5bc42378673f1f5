"""Atomic file writes, file hashing and a pickle reader that refuses to run code."""

import contextlib
import hashlib
import os
import pickle
import secrets

from imsearch import InputError

# The only globals a pickle of plain containers and numpy arrays needs: numpy's own rebuild helpers.
# Both module spellings appear, since numpy 2 renamed numpy.core to numpy._core.
ALLOWED_GLOBALS = {
    (module, "_reconstruct") for module in ("numpy.core.multiarray", "numpy._core.multiarray")
} | {
    (module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that accepts plain containers and numpy arrays and refuses every other global."""

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def restricted_load(path, encoding="ASCII"):
    """Read a pickle file of plain data; raise InputError for anything hostile, corrupt or missing."""
    try:
        with open(path, "rb") as file:
            return RestrictedUnpickler(file, encoding=encoding).load()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except pickle.UnpicklingError as error:
        raise InputError(f"{path}: not a safe pickle of plain data ({' '.join(str(error).split())})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError,
            OverflowError, UnicodeDecodeError, ImportError) as error:
        # Truncated or garbled pickles surface as any of these, depending on where the bytes break.
        raise InputError(f"{path}: truncated or corrupt ({type(error).__name__})") from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` to write to; rename it over `path` only on success."""
    directory, name = os.path.split(os.path.abspath(path))
    stem, suffix = os.path.splitext(name)
    try:
        os.makedirs(directory, exist_ok=True)
        temporary_path = create_unique(directory, f".{stem}-", suffix)
    except OSError as error:
        raise InputError(f"{path}: cannot write here ({error.strerror}); make its folder writable or write elsewhere") from None
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    except OSError as error:
        raise InputError(f"{path}: could not be written ({error.strerror}); free space, or write elsewhere") from None
    finally:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)


def create_unique(directory, prefix, suffix):
    """Create a new empty file with a random name and the usual permissions (0666 less the umask); return its path.

    Unlike tempfile.mkstemp (mode 0600), the kernel applies the process umask, so results are shared like any file.
    """
    while True:
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue  # 48 random bits collided: draw another name.


def atomic_write_bytes(path, data):
    """Write bytes to `path` through a temporary file, so readers never see half a file."""
    with atomic_path(path) as temporary_path:
        with open(temporary_path, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


def atomic_pickle(path, value):
    """Pickle `value` to `path` atomically, streaming to the temporary file rather than through memory."""
    with atomic_path(path) as temporary_path:
        with open(temporary_path, "wb") as file:
            pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
            file.flush()
            os.fsync(file.fileno())


def missing_file_error(path, what, default_name, maker, flag, fallback):
    """The InputError for a run-folder file (model, index) that is not there, with the command that makes it.

    A folder given for the file, or the run folder's own default file missing, each get their own advice;
    any other path gets fallback.
    """
    run_folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        return InputError(f"{path}: is a folder; pass {flag} with the {what} file itself, or --output {path}")
    if os.path.basename(path) == default_name:
        return InputError(f"{path}: no {what} here; run {maker} --output {run_folder} first, or pass {flag}")
    return InputError(f"{path}: no such {what} file; {fallback}")


def sha256_of_file(path):
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
