"""Write-then-rename, so a killed stage never leaves an output that looks complete.

    with atomic_output(Path("results/demo/manifest.parquet")) as tmp:
        write_something(tmp)          # tmp is a sibling path; renamed onto the target only on success

A full disk or a read-only folder surfaces as `OutputError`, whose message names the output, the cause
and the free space; `python -m stages.<stage>` prints it as one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

# Causes that no retry of the same job can fix: the user must free space or change permissions.
STORAGE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}


class OutputError(OSError):
    """An output could not be written for a reason outside the stage: full disk, quota, read-only folder."""


def _explained(error: OSError, target: Path) -> OutputError:
    folder = next((p for p in (target.parent, *target.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free / 2**20
    return OutputError(error.errno, f"cannot write {target}: {STORAGE_ERRORS[error.errno]} "
                                    f"({folder}: {free:.1f} MiB free). Free space or fix the folder's permissions, "
                                    f"then rerun; nothing partial was left behind")


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target` (file or folder) and move it into place on success.

    The temporary name carries the pid, so two attempts never share one; on failure it is removed and
    the previous `target` (if any) is left as it was.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"stage wrote nothing to {tmp} (target {target})")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            _remove(tmp)
    except OutputError:
        raise
    except OSError as e:
        if e.errno in STORAGE_ERRORS:
            raise _explained(e, target) from e
        raise


def report_output_errors(kind, value, traceback) -> None:
    """sys.excepthook of the stage CLIs: an OutputError as one line; anything else as usual."""
    if isinstance(value, OutputError):
        print(f"error: {value.strerror}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, traceback)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)  # best effort: a read-only folder must not hide the real error
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()
