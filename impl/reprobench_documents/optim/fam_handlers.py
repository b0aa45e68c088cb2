"""FAM's four frequency handlers as written, and the same band edges as (n_freqs, n_bands) matrices.

Source: "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt), section
"2. Parameter-Specific Handlers" — claims FAM-01 (band analysis and momentum rules), FAM-02.

The handler classes are the document's code (loops, ``.item()`` and ``np.argmax`` included): the
reference FAMOptimizer calls them one parameter at a time. The optimized FAM needs the same bands
for many gradients at once, so :func:`band_ranges` replays each handler's index arithmetic and
:func:`band_matrix` turns it into a 0/1 membership matrix: band powers = normalised |rFFT| @ M.
A property test checks ``(power @ band_matrix) == handler.analyze(...)`` for every handler.

What the band arithmetic does (measured in FAM-01, fixed in impl/reprobench_documents/optim/fam_corrected.py):
- default/embedding: ``band_size = F // n_bands`` drops the top ``F % n_bands`` bins, so the
  band powers sum to < 1 and the highest frequencies are never seen;
- conv: ``int(F ** (i / n) - 1)`` edges leave the first bands empty for small F and drop bin F-1;
- attention: the high half is split into ``n - n // 2`` bands — the same count as the low half for
  even n_bands, so "more bands in high frequencies" only holds for odd n_bands; n_bands = 1
  divides by zero (the optimizer's try/except then falls back to plain momentum).
"""
from __future__ import annotations

import numpy as np
import torch

HANDLER_NAMES = ("default", "conv", "attention", "embedding")


class FrequencyHandler:
    """Base class for parameter-specific frequency analysis functions"""

    def analyze(self, grad_sample, n_bands, eps=1e-8):
        """Default frequency analysis implementation"""
        freq_repr = torch.fft.rfft(grad_sample.float())
        freq_power = torch.abs(freq_repr)

        if freq_power.sum() > 0:
            freq_power = freq_power / (freq_power.sum() + eps)

        # Divide into bands
        band_size = freq_power.shape[0] // n_bands
        if band_size <= 0:
            return [0.0] * n_bands

        band_powers = []
        for i in range(n_bands):
            start_idx = i * band_size
            end_idx = min((i + 1) * band_size, freq_power.shape[0])
            if start_idx < end_idx:
                band_power = freq_power[start_idx:end_idx].sum().item()
                band_powers.append(band_power)
            else:
                band_powers.append(0.0)

        return band_powers

    def get_adaptive_momentum(self, band_values, base_alpha):
        """Default adaptive momentum calculation"""
        n_bands = len(band_values)
        high_freq_activity = sum(band_values[n_bands // 2:])

        if high_freq_activity > 0.3:
            return min(0.95, base_alpha + 0.05)
        return base_alpha


class ConvFrequencyHandler(FrequencyHandler):
    """Specialized handler for convolutional layers"""

    def analyze(self, grad_sample, n_bands, eps=1e-8):
        freq_repr = torch.fft.rfft(grad_sample.float())
        freq_power = torch.abs(freq_repr)

        if freq_power.sum() > 0:
            freq_power = freq_power / (freq_power.sum() + eps)

        # Use logarithmically spaced bands for convolution layers
        band_powers = []
        total_freqs = freq_power.shape[0]

        for i in range(n_bands):
            start_idx = int((total_freqs ** (i / n_bands)) - 1)
            end_idx = int((total_freqs ** ((i + 1) / n_bands)) - 1)
            start_idx = max(0, start_idx)
            end_idx = min(end_idx, total_freqs)

            if start_idx < end_idx:
                band_power = freq_power[start_idx:end_idx].sum().item()
                band_powers.append(band_power)
            else:
                band_powers.append(0.0)

        return band_powers

    def get_adaptive_momentum(self, band_values, base_alpha):
        """Convolutional layers benefit from more smoothing in mid-frequencies"""
        n_bands = len(band_values)
        mid_freq_activity = sum(band_values[n_bands // 4:(3 * n_bands) // 4])
        high_freq_activity = sum(band_values[(3 * n_bands) // 4:])

        if mid_freq_activity > 0.4:
            return min(0.97, base_alpha + 0.07)
        elif high_freq_activity > 0.3:
            return min(0.95, base_alpha + 0.05)
        return base_alpha


class AttentionFrequencyHandler(FrequencyHandler):
    """Specialized handler for attention layers"""

    def analyze(self, grad_sample, n_bands, eps=1e-8):
        freq_repr = torch.fft.rfft(grad_sample.float())
        freq_power = torch.abs(freq_repr)

        if freq_power.sum() > 0:
            freq_power = freq_power / (freq_power.sum() + eps)

        band_powers = []
        half_bands = n_bands // 2

        # Low frequency bands (first half)
        low_band_size = (freq_power.shape[0] // 2) // half_bands
        for i in range(half_bands):
            start_idx = i * low_band_size
            end_idx = min((i + 1) * low_band_size, freq_power.shape[0] // 2)
            if start_idx < end_idx:
                band_powers.append(freq_power[start_idx:end_idx].sum().item())
            else:
                band_powers.append(0.0)

        # High frequency bands (second half with more detail)
        high_band_size = (freq_power.shape[0] - (freq_power.shape[0] // 2)) // (n_bands - half_bands)
        for i in range(half_bands, n_bands):
            start_idx = (freq_power.shape[0] // 2) + (i - half_bands) * high_band_size
            end_idx = min((freq_power.shape[0] // 2) + (i - half_bands + 1) * high_band_size, freq_power.shape[0])
            if start_idx < end_idx:
                band_powers.append(freq_power[start_idx:end_idx].sum().item())
            else:
                band_powers.append(0.0)

        return band_powers

    def get_adaptive_momentum(self, band_values, base_alpha):
        """Custom adaptive momentum for attention layers"""
        n_bands = len(band_values)
        max_band_idx = np.argmax(band_values)

        if max_band_idx < n_bands // 4:
            return max(0.85, base_alpha - 0.05)  # dominant low frequency - less smoothing
        elif max_band_idx > 3 * n_bands // 4:
            return min(0.98, base_alpha + 0.08)  # dominant high frequency - more smoothing
        return base_alpha


class EmbeddingFrequencyHandler(FrequencyHandler):
    """Specialized handler for embedding layers"""

    def get_adaptive_momentum(self, band_values, base_alpha):
        """Embeddings often benefit from very stable updates"""
        n_bands = len(band_values)
        high_freq_activity = sum(band_values[(3 * n_bands) // 4:])
        if high_freq_activity > 0.2:  # Lower threshold for embeddings
            return min(0.98, base_alpha + 0.08)
        return base_alpha


def document_handlers() -> dict:
    return {"default": FrequencyHandler(), "conv": ConvFrequencyHandler(),
            "attention": AttentionFrequencyHandler(), "embedding": EmbeddingFrequencyHandler()}


# --- the same bands as index ranges / matrices, for the batched path -----------------------------

def band_ranges(kind: str, n_freqs: int, n_bands: int) -> list[tuple[int, int]]:
    """[start, end) of every band exactly as ``<kind>.analyze`` slices them (empty when start >= end).
    Raises ZeroDivisionError where the handler does (attention with n_bands < 2)."""
    F = n_freqs
    if kind in ("default", "embedding"):
        size = F // n_bands
        return [(i * size, min((i + 1) * size, F)) for i in range(n_bands)]
    if kind == "conv":
        return [(max(0, int(F ** (i / n_bands) - 1)), min(int(F ** ((i + 1) / n_bands) - 1), F)) for i in range(n_bands)]
    if kind == "attention":
        half = n_bands // 2
        low = (F // 2) // half
        high = (F - F // 2) // (n_bands - half)
        ranges = [(i * low, min((i + 1) * low, F // 2)) for i in range(half)]
        return ranges + [(F // 2 + j * high, min(F // 2 + (j + 1) * high, F)) for j in range(n_bands - half)]
    raise ValueError(f"handler must be one of {HANDLER_NAMES}, got {kind!r}")


def ranges_to_matrix(ranges, n_freqs: int, device=None) -> torch.Tensor:
    """(n_freqs, n_bands) float32 0/1 matrix: column b selects the bins of band b."""
    matrix = torch.zeros(n_freqs, len(ranges), device=device)
    for b, (start, end) in enumerate(ranges):
        if start < end:
            matrix[start:end, b] = 1.0
    return matrix


def band_matrix(kind: str, n_freqs: int, n_bands: int, device=None) -> torch.Tensor | None:
    """Membership matrix of ``kind``'s bands, or None where the handler raises (plain momentum)."""
    try:
        ranges = band_ranges(kind, n_freqs, n_bands)
    except ZeroDivisionError:
        return None
    return ranges_to_matrix(ranges, n_freqs, device)
