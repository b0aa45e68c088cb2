"""Environment fingerprint carried by every report and benchmark."""
from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(cwd: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the checkout holding this package; ('unknown', False) outside git."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def fingerprint(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    commit, dirty = git_state()
    env = {
        "torch_version": torch.__version__,
        "torch_git_version": getattr(torch.version, "git_version", "unknown"),
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "git_commit": commit,
        "git_dirty": dirty,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# What makes two measurements comparable: the software and the machine, not the commit or the time.
MACHINE_KEYS = ("torch_version", "torch_cuda", "python", "platform", "cpu_model", "threads", "measurement_threads",
                "device", "gpu")


def machine_fingerprint(env: dict) -> str:
    """A short hash of MACHINE_KEYS: equal fingerprints mean the same software on the same kind of machine."""
    import hashlib
    import json

    identity = {key: env.get(key) for key in MACHINE_KEYS}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
