"""One rule for random inputs (registry.draw_inputs): every sample and bench input is drawn on a CPU
generator and then moved, so its values do not depend on the target device; and the input paths of
`reprobench bench`, the declarative claim kinds and the benchmark suites go through it, which the
device-provenance check shows on the CPU."""
from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_flatten

import reprobench.bench.cases as bench_cases
from reprobench.claims.kinds_setup import draw_sample
from reprobench.measure.provenance import check_device_provenance
from reprobench.registry import ComponentSpec, Implementations, SampleInput, draw_inputs, list_components, make_generator

SEED = 7
# Devices to compare with the CPU: 'meta' everywhere (shapes, dtypes), the GPU where there is one (values).
OTHER_DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


def leaves(samples):
    return [(s.name, leaf) for s in samples for leaf in tree_flatten((s.args, s.kwargs))[0]]


@pytest.mark.parametrize("bench_inputs", [False, True], ids=["samples", "bench_inputs"])
@pytest.mark.parametrize("device", OTHER_DEVICES)
def test_inputs_are_the_cpu_draw_moved_whatever_the_device(device, bench_inputs):
    for spec in list_components():
        dtype = spec.dtypes[0]
        size = spec.test_sizes[-1]
        on_cpu = draw_inputs(spec, size, "cpu", dtype, SEED, bench=bench_inputs)
        elsewhere = draw_inputs(spec, size, device, dtype, SEED, bench=bench_inputs)
        # The rule on the CPU is the spec's own function on a CPU generator: nothing else happens there.
        direct = spec.inputs(size, torch.device("cpu"), dtype, make_generator(SEED), bench=bench_inputs)
        assert len(on_cpu) == len(elsewhere) == len(direct), spec.name
        for (name, a), (_, b), (_, c) in zip(leaves(on_cpu), leaves(elsewhere), leaves(direct), strict=True):
            if not isinstance(a, torch.Tensor):
                assert a == b == c, f"{spec.name} {name}: non-tensor arguments differ"
                continue
            where = f"{spec.name} sample {name}"
            assert b.device.type == device and (a.shape, a.dtype) == (b.shape, b.dtype), where
            assert torch.equal(a, c), f"{where}: draw_inputs on the CPU differs from the spec's own draw"
            if device != "meta":
                assert torch.equal(a, b.cpu()), f"{where}: values on {device} differ from the CPU draw"


def test_moving_keeps_inputs_that_alias_aliased():
    def same_tensor_twice(size, device, dtype, generator):
        x = torch.randn(2, size, device=device, dtype=dtype, generator=generator)
        return [SampleInput((x, x), dict(memory=x), name="self")]

    spec = ComponentSpec(name="toy.aliasing", claims=(), sample_inputs=same_tensor_twice,
                         build=lambda c, d, t, g: Implementations(torch.nn.Identity(), torch.nn.Identity()))
    (sample,) = draw_inputs(spec, 3, "meta", torch.float32, SEED)
    assert sample.args[0] is sample.args[1] is sample.kwargs["memory"] and sample.args[0].is_meta


def test_bad_arguments():
    spec = list_components("attention.dense")[0]
    with pytest.raises(TypeError, match="seed must be an int or a CPU torch.Generator"):
        draw_inputs(spec, 4, "cpu", torch.float32, 1.5)
    with pytest.raises(TypeError, match="seed must be"):
        draw_inputs(spec, 4, "cpu", torch.float32, True)
    with pytest.raises(TypeError, match="size must be an int"):
        draw_inputs(spec, "4", "cpu", torch.float32, 0)


# --- the input paths, under the provenance check (CUDA target emulated on the CPU) -----------------------

def made_generators(monkeypatch, module):
    """Record every generator `module` makes, as host generators for the check (they are CPU ones)."""
    made = []

    def recording(seed, device="cpu"):
        generator = make_generator(seed, device)
        if torch.device(device).type == "cpu":
            made.append(generator)
        return generator

    monkeypatch.setattr(module, "make_generator", recording)
    return made


@pytest.mark.parametrize("name", ["attention.dense", "attention.zoo_base", "rotary.rope", "optim.fam"])
def test_bench_input_path_never_hands_a_cpu_generator_to_a_device_draw(monkeypatch, name):
    """`reprobench bench`, suites/bench and suites/asv all take their inputs from bench.cases._built."""
    made = made_generators(monkeypatch, bench_cases)
    spec = list_components(name)[0]
    report = check_device_provenance(lambda: bench_cases._built.__wrapped__(name, spec.test_sizes[-1], "cpu", None),
                                     host_generators=made)
    assert made, "bench made no CPU generator: this test no longer watches its input path"
    assert report.ok, report.describe()


def test_declarative_kinds_input_path_never_hands_a_cpu_generator_to_a_device_draw():
    spec = list_components("attention.dense")[0]
    generator = make_generator(SEED)
    report = check_device_provenance(lambda: draw_sample(spec, 16, torch.device("cpu"), torch.float32, generator),
                                     host_generators=[generator])
    assert report.ok, report.describe()


def test_the_old_path_is_what_the_check_catches():
    """What bench did before the rule: the spec's sample function with the target device and a CPU generator."""
    spec = list_components("attention.dense")[0]
    generator = make_generator(SEED)
    report = check_device_provenance(lambda: spec.inputs(16, torch.device("cpu"), torch.float32, generator, bench=True),
                                     host_generators=[generator])
    assert {f.rule for f in report.findings} == {"generator_device"}, report.describe()
