"""ROPE-01: the standard RoPE path (default configuration, rotation properties, bf16 positions) and its speed
against rotary-embedding-torch."""
from __future__ import annotations

import torch

from reprobench.claims.experiment import Outcome, RunContext, combine, experiment, verdict_if
from reprobench.claims.experiments.rope._common import F64, HEAD_DIM, HEADS
from reprobench.measure import time_interleaved
from reprobench.registry import make_generator
from reprobench.rotary.common import textbook_rope_float64
from reprobench.rotary.document import DEVIATIONS
from reprobench.rotary.rotary_embedding import DocumentRoPE, FastRoPE


@experiment("ROPE-01")
def rope_standard_path(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    n = 1024 if ctx.quick else 4096
    # The document's default configuration: num_freqs=1 -> freqs = [0].
    default = DocumentRoPE(HEAD_DIM).to(F64)
    x = torch.randn(1, 1, n, HEAD_DIM, generator=g, dtype=F64)
    with torch.no_grad():
        default_change = (default(x) - x).abs().max().item()
    # Full spectrum (num_freqs = dim/2) at the document's theta.
    ref, opt = DocumentRoPE(HEAD_DIM, num_freqs=32).to(F64), FastRoPE(HEAD_DIM, num_freqs=32).to(F64)
    opt.load_state_dict(ref.state_dict())
    freqs = ref.rotary.freqs.detach()
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM, generator=g, dtype=F64)
    with torch.no_grad():
        norm_error = max((rope(x).norm(dim=-1) / x.norm(dim=-1) - 1).abs().max().item() for rope in (ref, opt))
        rel_error, offsets = 0.0, torch.randint(0, n, (20, 3), generator=g).tolist()
        for rope in (ref, opt):
            for m, p, s in offsets:
                base = (rope(q, offset=m) * rope(k, offset=p)).sum()
                shifted = (rope(q, offset=m + s) * rope(k, offset=p + s)).sum()
                rel_error = max(rel_error, (base - shifted).abs().item())
        offset_error = max((rope(x[..., 100:, :], offset=100) - rope(x)[..., 100:, :]).abs().max().item()
                           for rope in (ref, opt))
        textbook = textbook_rope_float64(x, freqs, offset=7)
        textbook_error = max((rope(x, offset=7) - textbook).abs().max().item() for rope in (ref, opt))
        # bfloat16 inputs: the document builds positions in t's dtype (bf16 integers are exact only to 256).
        xb = x.to(torch.bfloat16)
        ref32, opt32 = DocumentRoPE(HEAD_DIM, num_freqs=32), FastRoPE(HEAD_DIM, num_freqs=32)
        bf16_truth = textbook_rope_float64(xb, freqs)
        bf16_ref_error = (ref32(xb).to(F64) - bf16_truth).abs().max().item()
        bf16_opt_error = (opt32(xb).to(F64) - bf16_truth).abs().max().item()

    # Benchmark: optimized vs rotary-embedding-torch (benchmark-only peer) with the peer's frequencies.
    from rotary_embedding_torch import RotaryEmbedding as PeerRotary

    peer = PeerRotary(dim=HEAD_DIM)  # lang freqs 1/10000^(2k/d), caches its table
    fast = FastRoPE(HEAD_DIM, num_freqs=32, learned_freq=False)
    doc = DocumentRoPE(HEAD_DIM, num_freqs=32, learned_freq=False)
    with torch.no_grad():
        fast.rotary.freqs.copy_(peer.freqs)
        doc.rotary.freqs.copy_(peer.freqs)
        t = torch.randn(1, HEADS, n, HEAD_DIM, generator=g)
        peer_diff = (fast(t) - peer.rotate_queries_or_keys(t)).abs().max().item()
        timings = time_interleaved({"peer": lambda: peer.rotate_queries_or_keys(t), "optimized": lambda: fast(t),
                                    "reference": lambda: doc(t)}, rounds=1 if ctx.quick else 3, min_run_time=0.05)

    properties_ok = norm_error < 1e-12 and rel_error < 1e-9 and offset_error < 1e-12 and textbook_error < 1e-9
    measured = {
        "default_num_freqs": 1, "default_freqs": 0.0, "default_max_abs_change_over_positions": default_change,
        "default_rotated_features": 2, "default_freqs_learned": int(default.rotary.freqs.requires_grad),
        "dim": HEAD_DIM, "n": n,
        "norm_rel_error_f64": norm_error, "relative_position_error_f64": rel_error,
        "offset_error_f64": offset_error, "textbook_error_f64": textbook_error,
        "max_angle_per_token_rad_doc_spectrum": freqs.max().item(),
        "max_angle_per_token_rad_textbook_spectrum": 1.0,
        "bf16_error_vs_f64_reference_doc": bf16_ref_error, "bf16_error_vs_f64_optimized": bf16_opt_error,
        "bench_shape": f"1x{HEADS}x{n}x{HEAD_DIM} float32 fwd",
        "peer_ms": timings["peer"].median_ms, "optimized_ms": timings["optimized"].median_ms,
        "reference_ms": timings["reference"].median_ms,
        "speedup_vs_rotary_embedding_torch": timings["peer"].median_s / timings["optimized"].median_s,
        "speedup_vs_document_reference": timings["reference"].median_s / timings["optimized"].median_s,
        "max_abs_diff_vs_peer_same_freqs": peer_diff,
    }
    return Outcome(
        verdict=combine(verdict_if(properties_ok), verdict_if(default_change > 0)),
        claimed=("freqs = arange(num_freqs)·2π/θ (learned by default); rotate_qk applies cos/sin with rotate_half; "
                 "norms kept, scores depend on m − n, offsets work; default num_freqs=1."),
        measured=measured,
        rule=("rotation part holds if, in float64 at dim 64, θ=1e4, num_freqs=32: norm error < 1e-12, "
              "|⟨R_m q,R_n k⟩ − ⟨R_{m+s} q,R_{n+s} k⟩| < 1e-9, offset error < 1e-12, error vs a textbook per-pair "
              "rotation < 1e-9; default part holds if the default configuration changes any input. "
              "Both hold -> holds, one -> partial."),
        evidence=(f"Standard path is a correct RoPE (norm err {norm_error:.1e}, relative-position err {rel_error:.1e}, "
                  f"textbook err {textbook_error:.1e}), but the default num_freqs=1 gives freqs=[0]: max change "
                  f"{default_change:.1e} over {n} positions, i.e. it rotates nothing. The linear spectrum turns at "
                  f"most {freqs.max().item():.3f} rad/token (textbook RoPE: 1). Optimized is "
                  f"{measured['speedup_vs_rotary_embedding_torch']:.1f}x faster than rotary-embedding-torch at "
                  f"1x{HEADS}x{n}x{HEAD_DIM} (max diff {peer_diff:.1e}); bf16 positions: document err "
                  f"{bf16_ref_error:.2f} vs ours {bf16_opt_error:.3f}."),
        deviations=list(DEVIATIONS),
    )
