"""Invariance term: -log softmax(logits)[true_class] (cross-entropy) — DW-01.

Source: "Dynamic Weighting Formula Implementation" (000_294012e263fd6301.txt), section 1:

    def invariance(logits, true_class):
        probabilities = softmax(logits); p_true_class = probabilities[true_class]
        return -np.log(p_true_class)

The document then says this term is "implemented via cosine similarity in the attention
mechanism" (``cosine_distance()``). Those are different functions: cross-entropy depends on every
class's logit and on a label, the cosine distance on two feature vectors and no label. Both are
here (``invariance*`` and ``cosine_distance``) so DW-01 can compare them on the same data.

Versions:
- ``invariance_numpy`` — the document's code; ``softmax`` is never defined or imported there. We
  resolve it as the usual max-shifted softmax (scipy.special.softmax). Even so, -log(p) of an
  underflowed probability is inf: a logit gap above ~104 (float32) or ~745 (float64) gives inf
  where the cross-entropy is finite and equal to the gap. This is a defect of the formula as
  written, kept in the reference (DW-01 measures the gap where it starts).
- ``invariance_reference`` — the same formula in torch, one row at a time (the registry reference);
  returns one loss per row, as the document returns one loss per call.
- ``invariance`` — the optimized twin: ``F.cross_entropy(reduction="none")``, i.e. log_softmax
  and a gather, batched, no log of an underflowed probability, no host sync.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, register


def _softmax_numpy(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def invariance_numpy(logits, true_class):
    """The document's code for one sample: logits (classes,), true_class an int."""
    softmax = _softmax_numpy  # undefined in the document; resolved as scipy.special.softmax
    probabilities = softmax(np.asarray(logits))
    p_true_class = probabilities[true_class]
    loss = -np.log(p_true_class)
    return loss


def check_logits_classes(logits, true_class, check_values: bool = True):
    """logits (batch, classes) floating, true_class (batch,) integer; returns 2-D views."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor [batch, classes], got {type(logits).__name__}")
    if logits.dim() not in (1, 2):
        raise ValueError(f"logits must have shape [classes] or [batch, classes] (rank 1 or 2), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    if logits.shape[-1] == 0:
        raise ValueError("logits has 0 classes; pass at least one class")
    if isinstance(true_class, int) and not isinstance(true_class, bool):
        true_class = torch.tensor(true_class, device=logits.device)
    if not isinstance(true_class, torch.Tensor) or true_class.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"true_class must be an int or an integer tensor, got {getattr(true_class, 'dtype', type(true_class).__name__)}")
    if true_class.shape != logits.shape[:-1]:
        raise ValueError(f"true_class has shape {tuple(true_class.shape)}, expected {tuple(logits.shape[:-1])} "
                         f"(one class index per row of logits {tuple(logits.shape)})")
    if check_values:  # host syncs: the reference checks, the optimized hot path leaves it to the caller
        classes = logits.shape[-1]
        if bool(((true_class < 0) | (true_class >= classes)).any()):
            raise ValueError(f"true_class must be in [0, {classes}) (the number of classes of logits)")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contains NaN or inf")
    return logits.reshape(-1, logits.shape[-1]), true_class.reshape(-1).long()


def invariance_reference(logits, true_class):
    """The document's formula in torch, one row at a time. Returns (batch,) or a 0-d tensor."""
    rows, classes = check_logits_classes(logits, true_class, check_values=True)
    losses = []
    for row, label in zip(rows, classes):
        probabilities = torch.softmax(row, dim=-1)
        p_true_class = probabilities[label]
        losses.append(-torch.log(p_true_class))
    return torch.stack(losses).reshape(logits.shape[:-1])


def invariance(logits, true_class, *, check_values: bool = False):
    """Optimized: cross-entropy per row via log_softmax (finite for any finite logits)."""
    rows, classes = check_logits_classes(logits, true_class, check_values=check_values)
    return F.cross_entropy(rows, classes, reduction="none").reshape(logits.shape[:-1])


def cosine_distance(x, y, eps: float = 1e-8):
    """What the document says implements the invariance term: 1 - cos(x, y) over the last dim."""
    return 1.0 - F.cosine_similarity(x, y, dim=-1, eps=eps)


# --- registry ---------------------------------------------------------------------------------------

def _build(config, device, dtype, generator):
    return Implementations(reference=invariance_reference, optimized=invariance)


CLASSES = 10


def _sample_inputs(n, device, dtype, generator):
    def labels(*shape):
        return torch.randint(0, CLASSES, shape, device=device, generator=generator)

    logits = torch.randn(n, CLASSES, device=device, dtype=dtype, generator=generator)
    return [
        SampleInput((logits * 3.0, labels(n)), name="batch"),
        SampleInput((logits[0] * 20.0, labels()), name="single_row_confident"),
    ]


def _error_inputs(device, dtype, generator):
    logits = torch.randn(4, CLASSES, device=device, dtype=dtype, generator=generator)
    labels = torch.zeros(4, dtype=torch.long, device=device)
    return [
        ErrorInput(SampleInput((logits[None], labels), name="rank3"), ValueError, r"logits must have shape"),
        ErrorInput(SampleInput((logits.long(), labels), name="int_logits"), TypeError, r"logits must be a floating"),
        ErrorInput(SampleInput((logits, labels[:3]), name="class_count_mismatch"), ValueError,
                   r"true_class has shape \(3,\), expected \(4,\)"),
        ErrorInput(SampleInput((logits, labels.float()), name="float_class"), TypeError, r"true_class must be an int"),
    ]


register(ComponentSpec(
    name="regularizers.invariance",
    claims=("DW-01",),
    description="invariance = -log softmax(logits)[true_class]; reference per-row formula, optimized cross_entropy",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config={},
    test_sizes=(1, 7, 16),
    bench_sizes=(256, 1024, 4096, 16384),
    size_name="batch",
    time_exponent={"reference": 1.0, "optimized": 1.0},
    memory_exponent={"reference": 1.0, "optimized": 1.0},
))
