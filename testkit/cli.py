"""Running the ``bot`` command as a user would: a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_bot(*args: str, env: dict[str, str], cwd: str | Path,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` with only ``env`` (and PATH) in its environment."""
    full_env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([sys.executable, "-m", "bot", *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
