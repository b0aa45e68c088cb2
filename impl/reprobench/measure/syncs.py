"""Device syncs: scalar reads (``aten._local_scalar_dense``: .item(), bool(t), float(t), int(t)) of a
value computed on the device. On a GPU each one stalls the host until the device catches up, so
optimized code aims for 0 per forward and per optimizer step.

A scalar read of bookkeeping that lives on the host by design is not a sync: torch.optim keeps its
``step`` counters on the CPU (``torch.tensor(0.0)``, no device) and reads them with ``.item()`` every
step, and nothing waits for the GPU. Telling the two apart on a CPU test device, where every tensor
says 'cpu', needs to know where each tensor came from; measure.provenance tracks that, and this module
counts its ``device_scalar_read`` findings.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from reprobench.measure.provenance import check_device_provenance


def count_device_syncs(fn: Callable[[], Any], *, target_device: str | torch.device = "cuda",
                       device: str | torch.device = "cpu", host_tensors: Iterable[torch.Tensor] = ()) -> int:
    """Scalar reads of device values in one ``fn()`` call, emulating ``target_device`` when the call runs
    on the CPU. Tensors made before the call count as device values unless listed in ``host_tensors``."""
    report = check_device_provenance(fn, target_device=target_device, device=device, host_tensors=host_tensors)
    return report.count("device_scalar_read")


def count_host_syncs(fn: Callable[[], Any]) -> int:
    """The name earlier code and reports use: counts only scalar reads of *device* values
    (:func:`count_device_syncs` with a CUDA target), not reads of host bookkeeping such as
    torch.optim's CPU step counters."""
    return count_device_syncs(fn)
