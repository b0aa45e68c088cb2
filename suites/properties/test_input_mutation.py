"""The input-mutation check behind test_generic.test_inputs_unchanged, aimed at deliberately
misbehaving callables: each kind of write into the caller's inputs must be reported."""
from __future__ import annotations

import pytest
import torch

from reprobench.registry import SampleInput
from reprobench.testing.input_mutation import input_changes, input_state


def _sample() -> SampleInput:
    weight = torch.ones(3, requires_grad=True)
    weight.grad = torch.full((3,), 0.5)
    return SampleInput((torch.arange(6.0).reshape(2, 3), [torch.zeros(4), torch.ones(2, dtype=torch.int64)]),
                       dict(params={"weight": weight}), name="nested")


def _no_grad(write):
    def run(*args, **kwargs):
        with torch.no_grad():
            write(*args, **kwargs)
    return run


MUTATIONS = {
    "value": lambda x, others, params: x.add_(1),
    "one_element": lambda x, others, params: x[1, 2].fill_(7.0),
    "negative_zero": lambda x, others, params: others[0].neg_(),  # 0.0 -> -0.0: equal values, other bits
    "nested_int": lambda x, others, params: others[1].add_(1),
    "kwarg_leaf": _no_grad(lambda x, others, params: params["weight"].mul_(2)),
    "grad_values": lambda x, others, params: params["weight"].grad.add_(1),
    "grad_cleared": lambda x, others, params: setattr(params["weight"], "grad", None),
    "strides": lambda x, others, params: x.as_strided_((3, 2), (1, 3)),
    "requires_grad": lambda x, others, params: x.requires_grad_(),
    "list_grows": lambda x, others, params: others.append(torch.zeros(1)),
    "list_element_replaced": lambda x, others, params: others.__setitem__(0, others[0].clone()),
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_write_into_the_inputs_is_reported(kind):
    sample = _sample()
    before = input_state(sample)
    MUTATIONS[kind](*sample.args, **sample.kwargs)
    assert input_changes(before, sample), f"{kind}: write into the inputs went unreported"


def test_a_pure_call_reports_nothing():
    sample = _sample()
    before = input_state(sample)
    x, others = sample.args
    (x * 2).sum() + others[0].sum() + (sample.kwargs["params"]["weight"] * 3).sum()
    assert input_changes(before, sample) == []
