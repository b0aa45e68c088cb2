"""The device-provenance check (reprobench.measure.provenance) on the CPU, emulating a CUDA target: each
rule catches the GPU failure it exists for, and leaves alone what works on a GPU."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from reprobench.measure.provenance import (check_component, check_device_provenance, host_side,
                                           optimizer_host_tensors)
from reprobench.measure.syncs import count_device_syncs, count_host_syncs
from reprobench.registry import ComponentSpec, Implementations, SampleInput, draw_inputs, make_generator


def only(report, rule):
    assert [f.rule for f in report.findings] == [rule], report.describe()
    return report.findings[0]


# --- host tensors mixed into device computation -------------------------------------------------------

class ArangeWithoutDevice(nn.Module):
    def forward(self, x):
        return x + torch.arange(x.shape[-1])  # a CPU tensor on any device: fails on CUDA


class ArangeOnInputDevice(nn.Module):
    def forward(self, x):
        return x + torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)


def test_arange_without_device_added_to_the_input_is_flagged():
    x = torch.randn(2, 5)
    finding = only(check_device_provenance(lambda: ArangeWithoutDevice()(x)), "host_tensor_mixed")
    assert finding.op == "aten.add" and "in forward" in finding.where and "test_provenance.py" in finding.where
    assert "(5,)" in finding.detail and "device=" in finding.detail


def test_factory_given_the_input_device_is_clean():
    assert check_device_provenance(lambda: ArangeOnInputDevice()(torch.randn(2, 5))).ok


@pytest.mark.parametrize("make", [
    lambda: torch.zeros(3), lambda: torch.tensor([1.0, 2.0, 3.0]), lambda: torch.ones(3).view(1, 3),
    lambda: torch.arange(3).float().reshape(3), lambda: torch.full((3,), 2.0) * 2,
])
def test_every_host_factory_and_what_is_computed_from_it_is_host(make):
    x = torch.randn(4, 3)
    only(check_device_provenance(lambda: x * make()), "host_tensor_mixed")


def test_what_cuda_accepts_is_clean():
    x = torch.randn(4, 3)
    for fn in (lambda: x * torch.tensor(2.0),  # a 0-dim CPU tensor is a scalar to CUDA kernels
               lambda: x[torch.arange(2)],  # CPU index tensors are copied over
               lambda: x.index_put_((torch.tensor([0]),), x[1].clone()),  # ... in writes too
               lambda: x.copy_(torch.zeros(4, 3)),  # a host -> device upload
               lambda: x + torch.arange(3).to(x.device),  # moved before use
               lambda: torch.arange(3) * 2):  # host-only arithmetic
        report = check_device_provenance(fn)
        assert report.ok, report.describe()


def test_device_of_a_host_tensor_means_the_host():
    x = torch.randn(3)

    def made_beside(host_side_operand: bool):
        host = torch.arange(3)  # made inside the call without device=: host
        return (host if host_side_operand else x) + torch.ones(3, device=host.device)

    only(check_device_provenance(lambda: made_beside(False)), "host_tensor_mixed")
    assert check_device_provenance(lambda: made_beside(True)).ok


class HostWeightInBackward(torch.autograd.Function):
    """Forward keeps a host tensor it never uses; only the backward mixes it into device gradients."""

    @staticmethod
    def forward(ctx, x):
        ctx.weight = torch.linspace(0, 1, x.shape[-1])  # made without device=
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.weight


class SyncInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return grad * 2 if grad.abs().max().item() > 0 else grad


@pytest.mark.parametrize("function,rule", [(HostWeightInBackward, "host_tensor_mixed"),
                                           (SyncInBackward, "device_scalar_read")])
def test_backward_only_faults_are_flagged_in_the_backward_phase(function, rule):
    twins = Implementations(reference=function.apply, optimized=function.apply)
    x = torch.randn(2, 3)
    report = check_component(lambda: twins, lambda: [SampleInput((x,))], backward=True)
    finding = only(report, rule)
    assert finding.phase == "backward" and "in backward" in finding.where
    assert check_component(lambda: twins, lambda: [SampleInput((x,))], backward=False).ok


# --- generators on the wrong device ---------------------------------------------------------------------

def draws_on_target(size, device, dtype, generator):
    """A sample function as the built-ins write them: draws on `device` with the generator it is given."""
    return [SampleInput((torch.randn(2, size, 4, device=device, dtype=dtype, generator=generator),), name="x")]


def toy_spec(sample_inputs, build=None):
    return ComponentSpec(name="toy.provenance", claims=(), sample_inputs=sample_inputs,
                         build=build or (lambda config, device, dtype, generator: Implementations(nn.Identity(),
                                                                                                   nn.Identity())))


def test_sample_function_handed_a_cpu_generator_for_the_target_device_is_flagged():
    generator = make_generator(0)
    report = check_device_provenance(lambda: draws_on_target(3, torch.device("cpu"), torch.float32, generator),
                                     host_generators=[generator])
    finding = only(report, "generator_device")
    assert finding.op == "torch.randn" and "in draws_on_target" in finding.where
    assert "Expected a 'cuda' device type for generator" in finding.detail


def test_the_same_sample_function_through_draw_inputs_is_clean():
    generator = make_generator(0)
    spec = toy_spec(draws_on_target)
    report = check_device_provenance(lambda: draw_inputs(spec, 3, "cpu", torch.float32, generator),
                                     host_generators=[generator])
    assert report.ok, report.describe()


def test_generator_checks():
    host_gen = make_generator(0)
    x = torch.empty(3)
    for fn in (lambda: x.uniform_(generator=host_gen),  # in-place draw into a device tensor
               lambda: nn.init.normal_(x, generator=host_gen),
               lambda: torch.randperm(3, generator=host_gen, device=x.device)):
        only(check_device_provenance(fn, host_generators=[host_gen]), "generator_device")
    for fn in (lambda: torch.randn(3, generator=host_gen).to(x.device),  # drawn on the host, then moved
               lambda: torch.empty(3).normal_(generator=host_gen),  # a host tensor
               lambda: torch.rand(3, generator=make_generator(1, x.device), device=x.device)):  # made on the device
        report = check_device_provenance(fn, host_generators=[host_gen])
        assert report.ok, report.describe()


def test_module_moved_to_the_target_before_a_cpu_generator_init_is_flagged_at_build():
    def build(config, device, dtype, generator):
        layer = nn.Linear(3, 3).to(device=device)  # moved first, then drawn: fails on CUDA
        with torch.no_grad():
            layer.weight.uniform_(-1, 1, generator=generator)
        return Implementations(layer, layer)

    def build_then_move(config, device, dtype, generator):
        layer = nn.Linear(3, 3)
        with torch.no_grad():
            layer.weight.uniform_(-1, 1, generator=generator)
        layer = layer.to(device=device)
        return Implementations(layer, layer)

    for make, clean in ((build, False), (build_then_move, True)):
        generator = make_generator(0)
        spec = toy_spec(lambda n, device, dtype, g: [SampleInput((torch.randn(2, 3, device=device, generator=g),))],
                        build=make)
        report = check_component(lambda: spec.build({}, torch.device("cpu"), torch.float32, generator),
                                 lambda: draw_inputs(spec, 2, "cpu", torch.float32, generator),
                                 backward=True, host_generators=[generator])
        assert report.ok == clean, report.describe()
        if not clean:
            assert only(report, "generator_device").phase == "build"


# --- scalar reads: device values vs host bookkeeping -----------------------------------------------------

class ItemInForward(nn.Module):
    def forward(self, x):
        scale = x.abs().max().item()  # a device value read on the host
        return x / scale


def test_item_of_an_input_derived_value_in_a_forward_is_flagged():
    x = torch.randn(3, 4)  # made before the call: an input, a device value
    finding = only(check_device_provenance(lambda: ItemInForward()(x)), "device_scalar_read")
    assert finding.op == "aten._local_scalar_dense" and "in forward" in finding.where


@pytest.mark.parametrize("read", [lambda t: t.item(), bool, float, int])
def test_every_scalar_read_of_a_device_value_counts(read):
    x = torch.ones(())
    assert count_device_syncs(lambda: read(x * 2)) == 1
    assert count_device_syncs(lambda: read(torch.tensor(2.0) * 2)) == 0  # host bookkeeping


class AllScalarReads(TorchDispatchMode):
    """What count_host_syncs used to count: every aten._local_scalar_dense, whatever the tensor."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_reads_only_its_host_step_counters(foreach):
    torch.manual_seed(0)  # AdamW draws nothing; the parameters come from this test's generator
    generator = make_generator(0)
    params = [nn.Parameter(torch.randn(4, 3, generator=generator)), nn.Parameter(torch.randn(3, generator=generator))]
    optimizer = torch.optim.AdamW(params, foreach=foreach)

    def steps():
        for _ in range(3):
            for p in params:
                p.grad = torch.ones_like(p)
            optimizer.step()

    with AllScalarReads() as every:
        report = check_device_provenance(steps)
    assert every.count > 0, "AdamW no longer reads its step counter: this test no longer shows the distinction"
    assert report.ok, report.describe()
    # A check that starts after the first step must be told which state lives on the host.
    assert count_device_syncs(optimizer.step, host_tensors=optimizer_host_tensors(optimizer)) == 0
    assert count_device_syncs(optimizer.step) > 0  # without: step counters made earlier look like device values


class ClippingAdamW(torch.optim.AdamW):
    """A deliberate sync: the gradient norm read on the host every step."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.norm().item() > 1.0:
                    p.grad.div_(2.0)
        return super().step(closure)


def test_a_deliberate_item_in_an_optimizer_step_is_flagged():
    p = nn.Parameter(torch.randn(4, 3))
    optimizer = ClippingAdamW([p])

    def step():
        p.grad = torch.full_like(p, 3.0)
        optimizer.step()

    finding = only(check_device_provenance(step), "device_scalar_read")
    assert "in step" in finding.where and finding.count == 1
    optimizer = ClippingAdamW([p])
    assert count_host_syncs(step) == 1  # the old name counts device reads only, too (a fresh optimizer: see
    # test_adamw_reads_only_its_host_step_counters for state made before the count)


# --- whole-tensor reads and hidden reads ----------------------------------------------------------------

def test_device_to_host_copies_and_data_dependent_ops_are_flagged():
    x = torch.randn(6)
    for fn in (lambda: x.tolist(), lambda: x.cpu(), lambda: x.numpy(), lambda: x[x > 0], lambda: x.nonzero(),
               lambda: torch.equal(x, x), lambda: x.unique()):
        only(check_device_provenance(fn), "device_to_host")
    host = torch.arange(6)  # made before the call: named as host state
    for fn in (lambda: host.tolist(), lambda: host[host > 2], lambda: torch.where(x > 0, x, 0)):
        report = check_device_provenance(fn, host_tensors=[host])
        assert report.ok, report.describe()


# --- scope ----------------------------------------------------------------------------------------------

def test_host_side_code_is_not_checked_and_its_results_are_device_values():
    x = torch.randn(3)

    def drawn_on_host():
        with host_side():
            made = torch.arange(3).float()
            made.sum().item()
        return x + made

    assert check_device_provenance(drawn_on_host).ok


def test_a_cpu_target_has_no_host_device_boundary():
    x = torch.randn(3)
    assert check_device_provenance(lambda: (x + torch.arange(3)).sum().item(), target_device="cpu").ok


def test_findings_are_counted_once_per_place():
    x = torch.randn(3)

    def loop():
        for _ in range(4):
            x.sum().item()

    finding = only(check_device_provenance(loop), "device_scalar_read")
    assert finding.count == 4 and "(4x)" in finding.describe()


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be a callable"):
        check_device_provenance(42)
    with pytest.raises(ValueError, match="target_device='gpu0'"):
        check_device_provenance(lambda: None, target_device="gpu0")
    with pytest.raises(ValueError, match="rule='syncs'"):
        check_device_provenance(lambda: None).count("syncs")
