"""Corrected FAM: the document's rule with its four defects fixed — FAM-01, FAM-02, FAM-03.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt). The reference
FAMOptimizer (impl/reprobench_documents/optim/fam_reference.py) keeps these defects on purpose; this variant fixes them,
one property each (checked in suites/properties/test_fam.py and measured in FAM-01..03):
1. Handler choice (FAM-02). The document's generator expression shadows ``name``, so every named
   non-conv group becomes 'attention'. Fixed: a group's names are matched against the keywords,
   conv > attention ('attention', 'mha', 'self_attn') > embedding ('embed', 'token') > default.
2. Sampling (FAM-03). ``randperm`` rows/columns (or elements) put the sample in random order, so
   its spectrum is that of shuffled data — flat, whatever the gradient's. Fixed: a contiguous
   64 x 64 block (or 1000-element window) at a random offset, which keeps the order the rFFT reads.
3. Band edges (FAM-01). ``F // n_bands`` drops the top bins (band powers sum < 1), conv's log edges
   leave low bands empty, and attention's "finer high bands" are as wide as the low ones for even
   n_bands. Fixed: edges ``i * F // n`` cover every bin once (sum = 1); conv edges are log-spaced
   but strictly increasing; attention gives the high half n - n//3 bands (finer) and n_bands = 1
   is one band instead of a ZeroDivisionError.
4. Momentum direction (FAM-01). ``min(cap, alpha + d)`` lowers the momentum when alpha > cap, and
   ``max(0.85, alpha - 0.05)`` raises it when alpha < 0.85 — the opposite of what each rule is for.
   Fixed: "more smoothing" rules never go below alpha, "less smoothing" never above it.
Both twins share the sampling and band code, so reference == optimized as for optim.fam.
"""
from __future__ import annotations

import torch

from reprobench_documents.optim.fam import FAM, FAM_SPEC_FIELDS, document_momentum, make_fam_pair
from reprobench_documents.optim.fam_handlers import HANDLER_NAMES, document_handlers, ranges_to_matrix
from reprobench_documents.optim.fam_reference import FAMOptimizer
from reprobench.registry import ComponentSpec, register

KEYWORDS = (("conv", ("conv",)), ("attention", ("attention", "mha", "self_attn")), ("embedding", ("embed", "token")))


def select_handler(names) -> str:
    lowered = [n.lower() for n in names]
    for handler, keywords in KEYWORDS:
        if any(k in n for n in lowered for k in keywords):
            return handler
    return "default"


def corrected_add_handlers(params):
    if isinstance(params, list) and params and all(isinstance(pg, dict) for pg in params):
        for pg in params:
            pg.setdefault("handler", select_handler(pg.get("names", [])))
        return params
    return [{"params": params, "handler": "default"}]


def window_sample(generator, grad, p):
    """A contiguous block at a random offset (index tensors on the device: no host sync)."""
    g = generator

    def window(length, size):
        start = torch.randint(0, length - size + 1, (1,), generator=g, device=g.device)
        return start + torch.arange(size, device=g.device)

    if p.numel() > 10000:
        if p.dim() > 1:
            rows, cols = window(p.size(0), min(p.size(0), 64)), window(p.size(1), min(p.size(1), 64))
            return grad.index_select(0, rows).index_select(1, cols).flatten()
        return grad.flatten().index_select(0, window(p.numel(), 1000))
    return grad.flatten()


def corrected_band_ranges(kind: str, n_freqs: int, n_bands: int) -> list[tuple[int, int]]:
    F, n = n_freqs, n_bands
    if kind == "conv":  # log-spaced, strictly increasing while bins remain, last edge F
        edges = [0]
        for i in range(1, n + 1):
            target = F if i == n else int(round(F ** (i / n))) - 1
            edges.append(min(F, max(edges[-1] + 1, target)))
        return list(zip(edges[:-1], edges[1:]))
    if kind == "attention" and n >= 2:  # the high half gets more, narrower bands
        n_low = max(1, n // 3)
        low = [(i * (F // 2) // n_low, (i + 1) * (F // 2) // n_low) for i in range(n_low)]
        n_high, width = n - n_low, F - F // 2
        return low + [(F // 2 + j * width // n_high, F // 2 + (j + 1) * width // n_high) for j in range(n_high)]
    return [(i * F // n, (i + 1) * F // n) for i in range(n)]


def corrected_momentum(kind, bands, alpha):
    """The document's rules, with the direction of each change enforced."""
    effective = document_momentum(kind, bands, alpha)
    lowering = bands.argmax(-1) < bands.shape[-1] // 4 if kind == "attention" else torch.zeros_like(effective, dtype=torch.bool)
    return torch.where(lowering, effective.clamp(max=alpha), effective.clamp(min=alpha))


class CorrectedHandler:
    """Per-parameter analysis with the corrected bands (reference side: loops and .item())."""

    def __init__(self, kind):
        self.kind, self.document = kind, document_handlers()[kind]

    def analyze(self, grad_sample, n_bands, eps=1e-8):
        freq_power = torch.abs(torch.fft.rfft(grad_sample.float()))
        if freq_power.sum() > 0:
            freq_power = freq_power / (freq_power.sum() + eps)
        return [freq_power[s:e].sum().item() if s < e else 0.0
                for s, e in corrected_band_ranges(self.kind, freq_power.shape[0], n_bands)]

    def get_adaptive_momentum(self, band_values, base_alpha):
        value = self.document.get_adaptive_momentum(band_values, base_alpha)
        n = len(band_values)
        lowering = self.kind == "attention" and max(range(n), key=lambda i: (band_values[i], -i)) < n // 4
        return min(value, base_alpha) if lowering else max(value, base_alpha)


class CorrectedFAMOptimizer(FAMOptimizer):
    """Reference: FAMOptimizer's step as written, with corrected selection, sampling, bands, rules."""

    def _make_handlers(self):
        return {kind: CorrectedHandler(kind) for kind in HANDLER_NAMES}

    def _add_handlers_to_groups(self, params):
        return corrected_add_handlers(params)

    def _sample_gradient(self, grad, p):
        return window_sample(self.generator, grad, p)


class CorrectedFAM(FAM):
    """Optimized: FAM's batched, sync-free step with the corrected pieces."""

    def _add_handlers_to_groups(self, params):
        return corrected_add_handlers(params)

    def sample_gradient(self, grad, p):
        return window_sample(self.generator, grad, p)

    def _band_matrix(self, kind, n_freqs, n_bands, device):
        key = (kind, n_freqs, n_bands, device)
        if key not in self._matrices:
            self._matrices[key] = ranges_to_matrix(corrected_band_ranges(kind, n_freqs, n_bands), n_freqs, device)
        return self._matrices[key]

    def _momentum(self, kind, bands, alpha):
        return corrected_momentum(kind, bands, alpha)


register(ComponentSpec(
    name="optim.fam_corrected",
    description="FAM with handler choice, order-keeping sampling, full-coverage bands and one-sided rules fixed",
    build=make_fam_pair(CorrectedFAMOptimizer, CorrectedFAM),
    **FAM_SPEC_FIELDS,
))
