"""One available-memory reading per device (measure.memory.available_bytes) and one memory rule shared by
`reprobench bench` and the declarative kinds (bench.cost.fits_in_memory): the host reading is MemAvailable
(page cache counts, it is reclaimable), CUDA asks the driver, and for the same available bytes the bench
skips exactly the implementations the kinds measure under FakeTensorMode. Nothing here is timed."""
from __future__ import annotations

import io
import sys

import pytest
import torch

import reprobench.claims.kinds_counted as kinds_counted
import reprobench.measure.memory as memory
from reprobench import available_bytes
from reprobench.bench import bench_case, estimate_peak_bytes, fits_in_memory, input_bytes, memory_reason
from reprobench.claims.declarative import parse_claim_file
from reprobench.claims.declarative_kinds import experiment_for
from reprobench.claims.experiment import RunContext

# A machine whose page cache holds most of its memory: little is free, much is available.
MEMINFO = "MemTotal:       16000000 kB\nMemFree:          500000 kB\nMemAvailable:   12000000 kB\nCached: 11000000 kB\n"


def fake_proc(monkeypatch, text: str | None) -> None:
    """/proc/meminfo as `text` (None: unreadable, as outside Linux) for measure.memory only."""
    def fake_open(path, *args, **kwargs):
        if path != "/proc/meminfo" or text is None:
            raise OSError(2, "No such file or directory", path)
        return io.StringIO(text)
    monkeypatch.setattr(memory, "open", fake_open, raising=False)


def test_the_host_reading_is_memavailable_not_the_free_pages(monkeypatch):
    fake_proc(monkeypatch, MEMINFO)
    assert available_bytes("cpu") == 12000000 * 1024
    assert available_bytes(torch.device("cpu")) == 12000000 * 1024


def test_without_proc_meminfo_it_asks_psutil_else_counts_free_pages(monkeypatch):
    fake_proc(monkeypatch, None)

    class VirtualMemory:
        available = 7 * 2**30

    class Psutil:
        @staticmethod
        def virtual_memory():
            return VirtualMemory()

    monkeypatch.setitem(sys.modules, "psutil", Psutil)
    assert available_bytes("cpu") == 7 * 2**30
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed: the import fails
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(memory.os, "sysconf", pages.__getitem__)
    assert available_bytes("cpu") == 1000 * 4096


def test_cuda_asks_the_driver_for_that_device(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: asked.append(device) or (123, 456))
    fake_proc(monkeypatch, MEMINFO)  # the host's memory must not be what it answers
    assert available_bytes("cuda:1") == 123
    assert asked == [torch.device("cuda:1")]


@pytest.mark.parametrize("device, error, match", [
    (0, TypeError, "device must be a torch.device or a str"),
    ("nosuchdevice", ValueError, "device must name a torch device type"),
])
def test_bad_devices(device, error, match):
    with pytest.raises(error, match=match):
        available_bytes(device)


def test_the_memory_rule_takes_at_most_the_fraction():
    assert fits_in_memory(50, 100) and not fits_in_memory(51, 100)
    assert fits_in_memory(51, 100, memory_fraction=0.6)
    assert memory_reason(50, available_bytes=100) is None
    assert "50% of" in memory_reason(51, available_bytes=100)


def test_the_kinds_measure_fake_exactly_where_the_bench_would_skip(monkeypatch, tmp_path):
    """A peak_memory claim on attention.dense with the available memory set around the bench's own estimate:
    where the bench's rule skips the implementation the kind measures it under FakeTensorMode, with the
    bench's fake forward (its estimate less the inputs, which the kind does not count); where it runs, the
    kind measures it for real."""
    name, size = "attention.dense", 64
    peak, method = estimate_peak_bytes(name, size, "reference")
    assert method == "FakeTensorMode"
    path = tmp_path / "claims.toml"
    path.write_text(f'[[claim]]\nid = "TOY-01"\ntext = "t"\nsource = "s"\nkind = "peak_memory"\ncomponent = "{name}"\n'
                    f'implementation = "reference"\nsize = {size}\nat_most_mib = 1024\n')
    (item,) = parse_claim_file(path)
    ctx = RunContext(quick=False, device=torch.device("cpu"), figures_dir=tmp_path, decision_budget_s=1.0)
    measured = {}
    for available in (2 * peak, 2 * peak - 1):  # the edge of the 50% rule
        monkeypatch.setattr(kinds_counted, "available_bytes", lambda device: available)
        outcome = experiment_for(item)(ctx)
        skipped = memory_reason(peak, available_bytes=available) is not None
        assert outcome.measured["fake_tensor_mode"] is skipped, (available, peak)
        (key,) = [key for key in outcome.measured if key.startswith("peak_tensor_bytes_")]
        measured[skipped] = outcome.measured[key]
    assert measured[True] == peak - input_bytes(bench_case(name, size, "reference").sample)
