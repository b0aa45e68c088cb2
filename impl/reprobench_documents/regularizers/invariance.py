"""Invariance term: -log softmax(logits)[true_class] (cross-entropy) — DW-01.

Source: "Dynamic Weighting Formula Implementation" (documents/000_294012e263fd6301.txt), section 1:

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
- ``invariance`` — the optimized twin: cross-entropy per row as log_softmax and a gather, batched,
  no log of an underflowed probability, no host sync.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reprobench.registry import ComponentSpec, ErrorInput, Implementations, InputSupport, SampleInput, register
from reprobench.validation import INTEGER, check_finite, check_index_range, check_tensor


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


def check_logits_classes(logits, true_class, check_range: bool = True, check_finite_values: bool = True):
    """logits (classes,) or (batch, classes) float32/float64, true_class an int or an integer tensor
    with one class index per row; returns 2-D views. The value checks are host syncs: the reference
    makes the range check (it reads every label anyway), the optimized twin none."""
    check_tensor("logits", logits, shape=[("classes",), ("batch", "classes")], nonempty=("classes",))
    if isinstance(true_class, int) and not isinstance(true_class, bool):
        true_class = torch.tensor(true_class, device=logits.device)
    check_tensor("true_class", true_class, dtypes=INTEGER, same_device_as=logits, like_what="logits")
    if true_class.shape != logits.shape[:-1]:
        raise ValueError(f"true_class has shape {tuple(true_class.shape)}, expected {tuple(logits.shape[:-1])} "
                         f"(one class index per row of logits {tuple(logits.shape)})")
    if check_range:
        check_index_range("true_class", true_class, logits.shape[-1])
    if check_finite_values:
        check_finite("logits", logits)
    return logits.reshape(-1, logits.shape[-1]), true_class.reshape(-1).long()


def invariance_reference(logits, true_class, *, check_finite_values: bool = True):
    """The document's formula in torch, one row at a time. Returns (batch,) or a 0-d tensor.
    check_finite_values=False (as registered): NaN/inf logits give NaN, as in the optimized twin."""
    rows, classes = check_logits_classes(logits, true_class, check_finite_values=check_finite_values)
    losses = []
    for row, label in zip(rows, classes):
        probabilities = torch.softmax(row, dim=-1)
        p_true_class = probabilities[label]
        losses.append(-torch.log(p_true_class))
    losses = torch.stack(losses) if losses else rows.new_empty(0)  # batch 0: no rows, no losses
    return losses.reshape(logits.shape[:-1])


def invariance(logits, true_class, *, check_values: bool = False):
    """Optimized: cross-entropy per row, -log_softmax gathered at the label (finite for any finite
    logits). gather, not F.cross_entropy, whose ignore_index=-100 would silently give a 0 loss for
    a -100 label; gather refuses any index outside [0, classes) without a host sync."""
    rows, classes = check_logits_classes(logits, true_class, check_range=check_values, check_finite_values=check_values)
    log_p = F.log_softmax(rows, dim=-1)
    try:
        picked = log_p.gather(1, classes[:, None])[:, 0]
    except RuntimeError:
        check_index_range("true_class", classes, rows.shape[-1])  # only on failure: name the argument
        raise
    return (-picked).reshape(logits.shape[:-1])


def cosine_distance(x, y, eps: float = 1e-8):
    """What the document says implements the invariance term: 1 - cos(x, y) over the last dim."""
    return 1.0 - F.cosine_similarity(x, y, dim=-1, eps=eps)


# --- registry ---------------------------------------------------------------------------------------

def _reference(logits, true_class):
    """The registered reference: labels range-checked, logits not (NaN in, NaN out, as the optimized)."""
    return invariance_reference(logits, true_class, check_finite_values=False)


def _build(config, device, dtype, generator):
    return Implementations(reference=_reference, optimized=invariance)


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
        ErrorInput(SampleInput((logits[None], labels), name="rank3"), ValueError, r"logits: expected .* shape \(classes,\) or \(batch, classes\)"),
        ErrorInput(SampleInput((logits.long(), labels), name="int_logits"), TypeError, r"logits: expected a float32 or float64 tensor"),
        ErrorInput(SampleInput((logits, labels[:3]), name="class_count_mismatch"), ValueError,
                   r"true_class has shape \(3,\), expected \(4,\)"),
        ErrorInput(SampleInput((logits, labels.float()), name="float_class"), TypeError, r"true_class: expected an int64 or int32 tensor"),
    ]


register(ComponentSpec(
    name="regularizers.invariance",
    input_support=InputSupport(empty_batch=True),  # one loss per row: no rows, no losses
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
