"""Snapshots of a call's inputs, to check that a component leaves them bit-identical.

A twin that writes into its caller's tensors passes every equivalence test when each test hands it
fresh inputs (RoPE once wrote into the caller's tensor and was caught only because autograd
refuses in-place writes to a leaf). The snapshot walks args and kwargs through nested lists, tuples
and dicts and records, for each tensor, the object itself, its layout (shape, strides, storage
offset, dtype, device, requires_grad) and its bits; for a leaf, the same for its ``.grad``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reprobench.registry import SampleInput

_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as integers of the same width: bit equality, NaN payloads and -0.0 included."""
    flat = t.detach().reshape(-1).clone()
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return flat.to(torch.uint8) if flat.dtype == torch.bool else flat.view(_SAME_WIDTH_INT[flat.element_size()])


@dataclass(frozen=True, eq=False)
class TensorState:
    layout: tuple  # (shape, stride, storage_offset, dtype, device, requires_grad)
    bits: torch.Tensor
    grad: "TensorState | None"  # of a leaf's .grad

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorState":
        layout = (tuple(t.shape), t.stride(), t.storage_offset(), t.dtype, t.device, t.requires_grad)
        grad = t.grad if t.is_leaf else None  # .grad of a non-leaf is never populated (and warns)
        return cls(layout, _bits(t), None if grad is None else cls.of(grad))

    def differences(self, other: "TensorState", where: str) -> list[str]:
        names = ("shape", "stride", "storage_offset", "dtype", "device", "requires_grad")
        found = [f"{where}: {name} {a} -> {b}" for name, a, b in zip(names, self.layout, other.layout) if a != b]
        if not found and not torch.equal(self.bits, other.bits):
            changed = int((self.bits != other.bits).sum())
            found.append(f"{where}: {changed} of {self.bits.numel()} values changed")
        if (self.grad is None) != (other.grad is None):
            found.append(f"{where}.grad: {'None' if self.grad is None else 'set'} -> {'None' if other.grad is None else 'set'}")
        elif self.grad is not None:
            found += self.grad.differences(other.grad, f"{where}.grad")
        return found


def input_state(sample: SampleInput) -> dict[str, object]:
    """path -> (tensor, TensorState) for tensors, (container type, keys or length) for containers."""
    states: dict[str, object] = {}

    def walk(value, path: str) -> None:
        if isinstance(value, torch.Tensor):
            states[path] = (value, TensorState.of(value))
        elif isinstance(value, (list, tuple)):
            states[path] = (type(value).__name__, len(value))
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, dict):
            states[path] = ("dict", tuple(value))
            for key, item in value.items():
                walk(item, f"{path}[{key!r}]")

    walk(sample.args, "args")
    walk(sample.kwargs, "kwargs")
    return states


def input_changes(before: dict[str, object], sample: SampleInput) -> list[str]:
    """What a call changed in the inputs snapshotted as `before`; empty when nothing did."""
    after = input_state(sample)
    changes = [f"{path}: removed" for path in before.keys() - after.keys()]
    changes += [f"{path}: added" for path in after.keys() - before.keys()]
    for path in before.keys() & after.keys():
        old, new = before[path], after[path]
        tensors = isinstance(old[1], TensorState), isinstance(new[1], TensorState)
        if all(tensors):
            if old[0] is not new[0]:
                changes.append(f"{path}: replaced by another tensor")
            changes += old[1].differences(new[1], path)
        elif any(tensors):
            changes.append(f"{path}: a {'tensor' if tensors[0] else old[0]} became a {'tensor' if tensors[1] else new[0]}")
        elif old != new:
            changes.append(f"{path}: {old} -> {new}")
    return sorted(changes)
