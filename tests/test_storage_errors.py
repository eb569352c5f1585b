"""A full disk or a read-only output folder: one clear line naming the output and the cause, nothing partial.

Real conditions where the machine allows them (root mounts a 64 KiB tmpfs, read-only for the second
case; other users get a chmod-ed folder); an injected ENOSPC everywhere, so CI checks the message too.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPORA, REPO
from stages.common.atomic import OutputError, atomic_output


def mount_tmpfs(folder: Path, *options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]), "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    folder = tmp_path / "full"
    if os.geteuid() != 0 or not mount_tmpfs(folder):
        pytest.skip("needs root and mount to make a small file system; the injected-ENOSPC test covers the rest")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if not mount_tmpfs(folder, "ro"):
        pytest.skip("root without mount: a chmod-ed folder would not stop root")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def prepare_cli(manifest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--corpus", str(CORPORA / "ljspeech"), "--config-json",
         json.dumps({"format": "ljspeech", "path": str(CORPORA / "ljspeech")}), "--manifest", str(manifest),
         "--quarantine", str(manifest.with_name("quarantine.parquet")), "--threads", "1"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_full_disk_names_the_output_and_leaves_the_old_one(full_disk):
    target = full_disk / "big.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match=r"cannot write .*big\.bin: no space left on the device \(.*MiB free\)"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"x" * 2**20)
    assert target.read_bytes() == b"old" and [p.name for p in full_disk.iterdir()] == ["big.bin"]


def test_a_stage_on_a_full_disk_prints_one_line_and_fails(full_disk):
    with pytest.raises(OSError), open(full_disk / "filler", "wb", buffering=0) as filler:
        while True:  # fill the file system to the last page
            filler.write(b"x" * 1024)
    result = prepare_cli(full_disk / "out" / "manifest.parquet")
    assert result.returncode == 1
    assert "no space left on the device" in result.stderr and "Traceback" not in result.stderr
    assert not (full_disk / "out" / "manifest.parquet").exists()


def test_a_read_only_output_folder_prints_one_line_and_fails(read_only):
    result = prepare_cli(read_only / "manifest.parquet")
    assert result.returncode == 1
    assert re.search(r"error: cannot write .*manifest\.parquet: (the file system is read-only|permission denied)",
                     result.stderr) and "Traceback" not in result.stderr


def test_an_injected_enospc_is_explained(tmp_path, monkeypatch):
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="no space left on the device") as raised:
        with atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("data")
    assert raised.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


def test_other_os_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        with atomic_output(tmp_path / "out.txt") as tmp:
            open(tmp / "missing" / "x", "w")
    assert not isinstance(raised.value, OutputError)
