"""Environment fingerprint carried by every report and benchmark."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
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


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../reprobench


def git_state(cwd: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the checkout holding this package; ('unknown', False) outside git.

    Without `cwd`, only a checkout of reprobench itself counts (its top level holds impl/reprobench, this
    package): an installed copy inside some other repository (a virtualenv in a user's project) must not
    report that project's commit as reprobench's."""
    if cwd is None:
        cwd = PACKAGE_DIR.parent
        try:
            top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown", False
        if (Path(top) / "impl" / "reprobench").resolve() != PACKAGE_DIR:
            return "unknown", False
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_commit(distribution: str = "reprobench") -> str | None:
    """The commit a pip install from a git URL recorded (PEP 610 direct_url.json), if any."""
    try:
        text = importlib.metadata.distribution(distribution).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        return json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (ValueError, AttributeError):
        return None


def plugin_provenance() -> list[dict]:
    """Each loaded plugin: its module, entry point, distribution and version, and the distributions (with
    versions) of the packages it imports, mapped by importlib.metadata.packages_distributions()."""
    from reprobench.plugins import LOADED_PLUGINS

    owners = importlib.metadata.packages_distributions()  # top-level module -> distribution names
    records = []
    for plugin in LOADED_PLUGINS:
        distribution = plugin.distribution or next(iter(owners.get(plugin.module.partition(".")[0], [])), None)
        packages = {name: _version(name) for top in plugin.imports for name in owners.get(top, [])}
        packages.pop(distribution, None)
        records.append({"module": plugin.module, "entry_point": plugin.entry_point, "distribution": distribution,
                        "version": _version(distribution) if distribution else None,
                        "packages": dict(sorted(packages.items()))})
    return records


def fingerprint(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    commit, dirty = git_state()
    if commit == "unknown":
        commit = installed_commit() or "unknown"  # a non-editable install from git records its commit
    env = {
        "torch_version": torch.__version__,
        "torch_git_version": getattr(torch.version, "git_version", "unknown"),
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "reprobench_version": _version("reprobench") or "unknown",
        "git_commit": commit,
        "git_dirty": dirty,
        "plugins": plugin_provenance(),
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
