"""Host syncs: calls of ``aten._local_scalar_dense`` (what .item(), bool(tensor), int(tensor) and
.tolist() run). On a GPU each one stalls the host until the device catches up, so optimized code
aims for 0 per forward / per optimizer step."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {torch.ops.aten._local_scalar_dense.default}


class HostSyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNC_OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_host_syncs(fn: Callable[[], Any]) -> int:
    with HostSyncCounter() as counter:
        fn()
    return counter.count
