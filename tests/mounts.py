"""Run a command inside a private mount namespace (``unshare -rm``) with a real file
system condition: a tiny tmpfs that fills up, or a directory mounted read-only.

Tests run as root, and root ignores mode bits, so ``chmod`` cannot make a directory
read-only for them; a read-only bind mount can, and a private namespace keeps every mount
to the one child process (nothing to clean up, nothing visible outside it).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest

UNSHARE = shutil.which("unshare")


@cache
def _namespaces_work() -> bool:
    if UNSHARE is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            [
                UNSHARE,
                "-rm",
                "sh",
                "-c",
                f"{tmpfs(Path(scratch), '64k')}; {read_only(Path(scratch))}",
            ],
            capture_output=True,
            timeout=30,
        )
    return probe.returncode == 0


def need_mount_namespaces() -> None:
    if not _namespaces_work():
        pytest.skip("needs `unshare -rm` with tmpfs and bind mounts (user and mount namespaces)")


def run_in_namespace(
    setup: str, command: list[str], *, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``setup`` (shell, run as namespace root) then ``command``, in a private namespace."""
    assert UNSHARE is not None
    script = f"set -e; {setup}; exec {shlex.join(command)}"
    return subprocess.run(
        [UNSHARE, "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=timeout
    )


def tmpfs(directory: Path, size: str) -> str:
    return f"mount -t tmpfs -o size={size},mode=0700 tmpfs {shlex.quote(str(directory))}"


def read_only(directory: Path) -> str:
    d = shlex.quote(str(directory))
    return f"mount --bind {d} {d}; mount -o remount,bind,ro {d}"
