"""Peak memory: live tensor bytes tracked at the dispatcher, and the allocator's view.

``peak_tensor_bytes`` counts the storages that tensors created *during* the call keep alive:
a TorchDispatchMode sees every op's outputs, a finalizer per storage tells when it dies, and
the peak of the running sum is the answer. It is deterministic, device-agnostic and works under
FakeTensorMode (meta storages carry their byte size), so sizes that do not fit in memory can be
measured too. Inputs and parameters that existed before the call are not counted. Memory that a
kernel allocates internally and frees before returning (scratch buffers of fused kernels) is
invisible here; the allocator cross-check covers that.

``available_bytes`` is the one reading of how much memory a device can still hand out, shared by
`reprobench bench`, `reprobench profile`, the declarative claim kinds and the components that size
their chunks by it.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class StorageTracker(TorchDispatchMode):
    """Tracks live bytes of storages first seen as op outputs while the mode is active.

    A storage's Python object lives exactly as long as its StorageImpl (PyTorch preserves it), so a
    weakref finalizer on it fires at the moment the memory is released — by a Python decref, by the
    autograd engine dropping saved tensors, anywhere — and the running sum stays exact without
    polling every live storage after every op.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}  # storage key -> bytes, for storages created during the call
        self.known: set[int] = set()  # storages that existed before (first seen as arguments)
        self.current = 0
        self.peak = 0

    @staticmethod
    def _key(storage) -> int:
        return StorageWeakRef(storage).cdata

    def _released(self, key: int) -> None:
        nbytes = self.live.pop(key, None)
        if nbytes is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                key = self._key(storage)
                if key not in self.live and key not in self.known:
                    self.known.add(key)
                    # the address may be reused by a new storage once this one dies
                    weakref.finalize(storage, self.known.discard, key)
        out = func(*args, **kwargs)
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                key = self._key(storage)
                if key not in self.live and key not in self.known:
                    nbytes = storage.nbytes()
                    self.live[key] = nbytes
                    self.current += nbytes
                    weakref.finalize(storage, self._released, key)
        # Inputs the op consumed are still referenced here, so output and inputs coexist at this point.
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class PeakMemory:
    peak_bytes: int  # highest sum of live bytes of storages created during the call
    retained_bytes: int  # bytes still alive when the call returned (outputs, saved state)

    @property
    def overhead_bytes(self) -> int:
        """The peak minus what the call left alive (its outputs, gradients, new state): the working memory a
        README means by "memory overhead". Inputs are never counted, as they existed before the call."""
        return self.peak_bytes - self.retained_bytes


def peak_tensor_bytes(fn: Callable[[], Any]) -> PeakMemory:
    """Run ``fn()`` under the storage tracker and return its peak live tensor bytes."""
    # No gc.collect(): garbage from before the call is not counted anyway, and a full collection
    # costs seconds in a process that has imported torch.
    tracker = StorageTracker()
    with tracker:
        result = fn()
    retained = tracker.current
    del result
    return PeakMemory(peak_bytes=tracker.peak, retained_bytes=retained)


def fake_peak_tensor_bytes(make_call: Callable[[], Callable[[], Any]]) -> PeakMemory:
    """Peak tensor bytes under FakeTensorMode: nothing is allocated, so any size can be measured.

    ``make_call`` runs inside the fake mode and must build the module and inputs there (so they are
    fake too) and return the zero-argument call to measure.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=False):
        call = make_call()
        return peak_tensor_bytes(call)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors an optimizer keeps in ``optimizer.state`` (moments, step counters, ...), each
    storage counted once: what its state_dict saves per parameter, and what "half of AdamW's state" means."""
    if not isinstance(getattr(optimizer, "state", None), Mapping):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (with a .state mapping), got "
                        f"{type(optimizer).__name__}")
    storages: dict[int, int] = {}
    for state in optimizer.state.values():
        for value in tree_flatten(state)[0]:
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                storages[StorageTracker._key(storage)] = storage.nbytes()
    return sum(storages.values())


def allocator_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """The allocator's view of peak memory during ``fn()``, as a cross-check of the tensor tracker.

    CUDA: torch.cuda.max_memory_allocated after a reset. CPU: the profiler's memory events
    (profile_memory=True), whose running sum of allocations and frees gives the peak; unlike the
    tensor tracker this includes kernel scratch buffers.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each event's self memory is the signed net bytes it allocated (ops) or freed ('[memory]'
    # events outside any op); their running sum in start-time order approximates the live bytes.
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def available_bytes(device: torch.device | str) -> int:
    """Bytes ``device`` can still hand out: on CUDA the driver's free memory (torch.cuda.mem_get_info); on
    any other device the host's (the CPU's, and MPS shares it).

    On the host this is MemAvailable from /proc/meminfo, not the free pages: the kernel hands out page
    cache on demand (it is reclaimable), so a machine that has read a few large files shows little free
    memory while most of it is available. Counting free pages only would skip or chunk work that fits.
    Outside Linux it is psutil's ``available`` (the same quantity) where psutil is installed, else the
    free pages (an underestimate, so a safe one).
    """
    if not isinstance(device, (torch.device, str)):
        raise TypeError(f"device must be a torch.device or a str such as 'cpu' or 'cuda:0', got "
                        f"{type(device).__name__} {device!r}")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must name a torch device type such as 'cpu' or 'cuda:0', got {device!r}") from exc
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file states kB
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.virtual_memory().available)
