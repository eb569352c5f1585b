"""Write-then-rename, so a killed stage never leaves an output that looks complete.

    with atomic_output(Path("results/demo/manifest.parquet")) as tmp:
        write_something(tmp)          # tmp is a sibling path; renamed onto the target only on success
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target` (file or folder) and move it into place on success.

    The temporary name carries the pid, so two attempts never share one; on failure it is removed and
    the previous `target` (if any) is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
