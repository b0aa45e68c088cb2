"""The claims ledger: every claim ID of CLAIMS.md with the document it comes from and its text.

One entry per ID, verbatim from CLAIMS.md (`EFF-07`, not `eff7`). An experiment
(impl/reprobench/claims/experiments/*.py) measures a claim and a stated rule turns the measurement into a
verdict; an ID with no experiment yet is reported as `not-implemented`, so the gap stays visible.
"""
import re


SOURCES = {
    "DW": "000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)",
    "DCAL": "001_128d0a2e45dbf7cd.txt (Dual Cross-Attention Model Optimizations)",
    "FAM": "002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)",
    "ROPE": "002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)",
    "ZOO": "002_3edd67eb5ef57768.txt (Neural Network Optimizations and Embeddings)",
    "EQ": "003_cfb6f10add0ba6bf.txt (Sparse Attention + Group-Aware Homotopy)",
    "EFF": "004_7701952726fa4164.txt (Efficient Attention Mechanisms)",
}

# id -> (source document file, claim text as written in CLAIMS.md)
CLAIM_TEXTS = {
    'DW-01': ('000_294012e263fd6301.txt', 'Invariance term is -log softmax(logits)[true_class] (cross-entropy); the text says it is "implemented via cosine similarity". Check the formula against the cosine-similarity implementation: are they the same function?'),
    'DW-02': ('000_294012e263fd6301.txt', 'Variance regularization: sum over dims of max(0, gamma - sqrt(var + eps)), divided by the number of samples (torch version; the numpy version divides by an undefined `m`). Check: zero when every per-dim std >= gamma, non-negative, invariant to sample order and to adding a constant; numpy and torch versions agree.'),
    'DW-03': ('000_294012e263fd6301.txt', 'Covariance regularization: sum of squared off-diagonal entries of the (K-1)-normalised covariance. Check: zero for decorrelated data, invariant to sample order and shift, scales as s^4 under E -> sE; numpy and torch agree.'),
    'DW-04': ('000_294012e263fd6301.txt', '"Covariance matrix computed in chunks (OOM prevention)" and "chunk size adapts based on available memory": chunked result equals the unchunked one; peak memory bounded as the chunk shrinks.'),
    'DW-05': ('000_294012e263fd6301.txt', 'Dynamic weights: a small network predicts [heads, 3] weights that sum to 1 (softmax) and change with the input.'),
    'DW-06': ('000_294012e263fd6301.txt', '"Fallback to basic attention if advanced fails; graceful degradation when OOM occurs": inject a failure / OOM in the advanced path; the layer returns the basic attention output with a warning.'),
    'DW-07': ('000_294012e263fd6301.txt', '"Avoids materializing large intermediate tensors", "scalable to various model sizes": peak memory of the layer against plain attention across sizes.'),
    'DW-08': ('000_294012e263fd6301.txt', '"Improves few-shot learning accuracy": a small few-shot task on data that ships with a package (no download), dynamic weighting against plain attention, several seeds.'),
    'DCAL-01': ('001_128d0a2e45dbf7cd.txt', 'PWCA that reuses the SA block\'s qkv parameters directly gives "50% reduction in parameter storage during training" against a PWCA that copies the weights into new modules.'),
    'DCAL-02': ('001_128d0a2e45dbf7cd.txt', 'Same change: "~30% faster PWCA computation (no weight copying)".'),
    'DCAL-03': ('001_128d0a2e45dbf7cd.txt', '"Memory usage: 25% reduction overall" from eliminating weight copying.'),
    'DCAL-04': ('001_128d0a2e45dbf7cd.txt', 'PWCA: queries of image 1 attend to concatenated keys and values of images 1 and 2. (Property: what must PWCA return when image 2 equals image 1?)'),
    'DCAL-05': ('001_128d0a2e45dbf7cd.txt', 'Attention rollout costs O(L x N^3) per GLCA forward pass (L layers, N tokens).'),
    'DCAL-06': ('001_128d0a2e45dbf7cd.txt', 'Rollout caching: "up to 60% faster evaluation on repeated patterns".'),
    'DCAL-07': ('001_128d0a2e45dbf7cd.txt', 'The cache key is a hash of per-layer attention statistics (mean, std, ...), "memory efficient". A cache must never return a result that differs from recomputation: check that for all inputs.'),
    'DCAL-08': ('001_128d0a2e45dbf7cd.txt', '"LRU-style cache with configurable size limits"; hit/miss statistics (`get_cache_stats`, `clear_attention_cache`).'),
    'DCAL-09': ('001_128d0a2e45dbf7cd.txt', '"Existing model checkpoints load without modification"; "default behavior unchanged (caching can be disabled)".'),
    'DCAL-10': ('001_128d0a2e45dbf7cd.txt', 'Uncertainty-weighted loss (Kendall et al.) balances the SA, GLCA and PWCA losses automatically; weights are reported.'),
    'DCAL-11': ('001_128d0a2e45dbf7cd.txt', 'Evaluation runs SA + GLCA only (PWCA is training-only); GLCA keeps the top `top_k_ratio` (0.1) of queries by rollout.'),
    'FAM-01': ('002_3edd67eb5ef57768.txt', 'Gradient samples are analysed by rFFT into n_bands normalised band powers; per-handler momentum rules (default, conv with log-spaced bands, attention with finer high bands, embedding) move the momentum within the documented caps (0.85 .. 0.98).'),
    'FAM-02': ('002_3edd67eb5ef57768.txt', "Handlers are chosen from parameter-group names: 'conv' -> conv; 'attention'/'mha'/'self_attn' -> attention; 'embed'/'token' -> embedding; otherwise default."),
    'FAM-03': ('002_3edd67eb5ef57768.txt', 'FAM applies only after `fam_start_step` and to tensors with more than `min_size` elements; large tensors are sampled (64 x 64 sub-block, or 1000 elements); otherwise plain momentum (the text says it falls back to "regular Maxfactor").'),
    'FAM-04': ('002_3edd67eb5ef57768.txt', 'Debug mode writes band/alpha history to JSON every `debug_interval` steps.'),
    'FAM-05': ('002_3edd67eb5ef57768.txt', 'SimpleFAM: after 100 steps, for tensors over 1000 elements, alpha_eff = min(0.98, alpha + 0.05 * high-frequency ratio).'),
    'FAM-06': ('002_3edd67eb5ef57768.txt', 'FAMScheduler: linear warmup from warmup_start_lr to base lr, then cosine to eta_min. FAMScheduler2: warmup, optional plateau, cosine decay (+1e-8).'),
    'FAM-07': ('002_3edd67eb5ef57768.txt', 'Motivation: frequency-adaptive momentum helps optimisation of attention/embedding/conv parameters. Train a small model with FAM, SimpleFAM and SGD-momentum/AdamW baselines, same budget, several seeds; report loss curves.'),
    'ROPE-01': ('002_3edd67eb5ef57768.txt', 'RotaryEmbedding (standard path): freqs = arange(num_freqs) * 2*pi/theta, learned by default; rotate_qk applies cos/sin with rotate_half. Check: norm preserved, <R_m q, R_n k> depends only on m - n, offsets work; what the default configuration actually rotates.'),
    'ROPE-02': ('002_3edd67eb5ef57768.txt', 'Quaternion rotation `q_rotation` performs 3D rotations ("better preserve geometric relationships"): orthogonality, norm preservation, composition.'),
    'ROPE-03': ('002_3edd67eb5ef57768.txt', 'Givens `rotation_matrix` gives rotations in the (i, j) plane; for dims == 3 it is averaged with the quaternion rotation. Check orthogonality and det = +1 for every dims.'),
    'ROPE-04': ('002_3edd67eb5ef57768.txt', '`project_and_rotate` projects to 3D, rotates, projects back with an SVD-based pseudo-inverse, "enabling true geometric rotations even for high-dimensional embeddings". Check norm/angle preservation and invertibility.'),
    'ROPE-05': ('002_3edd67eb5ef57768.txt', '"SVD for orthogonal initialization, aimed at maintaining numerical stability": NaN/inf behaviour on large inputs (the code rescales norms above 1e3 and falls back on NaN).'),
    'ROPE-06': ('002_3edd67eb5ef57768.txt', 'CompactRotation is "lightweight, reducing computational overhead while maintaining flexibility": time and memory against RotaryEmbedding\'s rotations path; outputs agree where they should.'),
    'ROPE-07': ('002_3edd67eb5ef57768.txt', 'learned_rotations / freq_ranges: learnable rotation parameters are differentiable and applied per position.'),
    'ZOO-01': ('002_3edd67eb5ef57768.txt', '"Many can be used as drop-in replacements for nn.MultiheadAttention": call signature and output shapes against nn.MultiheadAttention.'),
    'ZOO-02': ('002_3edd67eb5ef57768.txt', 'AdaptiveSpan: learned span scale "optimizing computation while preserving modeling capacity": span mask soft and differentiable; cost against full attention.'),
    'ZOO-03': ('002_3edd67eb5ef57768.txt', 'MyelinatedLayer: node-importance gating, policy-driven layer jumps, working memory; every attention row it uses sums to 1 over unmasked keys; masks do what they say.'),
    'ZOO-04': ('002_3edd67eb5ef57768.txt', 'RelativeForce: force + multi-hop topological attention; cost of the [batch, seq, seq, dim] tensors; memory against standard attention.'),
    'ZOO-05': ('002_3edd67eb5ef57768.txt', 'Refiner: Q-learning over attention spans converges on a toy reward.'),
    'ZOO-06': ('002_3edd67eb5ef57768.txt', 'IntegratedAttention: sliding windows (`slide_win`) + adaptive span + global attention; equals full attention when the window covers the sequence.'),
    'ZOO-07': ('002_3edd67eb5ef57768.txt', 'Content-dependent key/value updates (`should_update_key`) and dynamic layer skipping (`decide_jump`) "learn when to skip unnecessary computation": measure compute skipped.'),
    'EQ-01': ('003_cfb6f10add0ba6bf.txt', "EquivariantConv2d's filter cache keyed by `hash(data_ptr())` never refreshes after in-place updates: loss frozen (47.13 -> 47.13 -> 47.13)."),
    'EQ-02': ('003_cfb6f10add0ba6bf.txt', 'The fix keys the cache by (data_ptr, norm): "training completely broken -> now working perfectly" (421 -> 0.10). Check that the fixed cache refreshes after every change of the kernel\'s values.'),
    'EQ-03': ('003_cfb6f10add0ba6bf.txt', 'The layer is equivariant to the group action (C4 rotations): f(g.x) = g.f(x).'),
    'EQ-04': ('003_cfb6f10add0ba6bf.txt', 'Parameters: separate networks cost 48,384 x N; shared encoder + adapters 14,976 + 256 x N; N = 10: 483,840 -> 17,536 (96% reduction).'),
    'EQ-05': ('003_cfb6f10add0ba6bf.txt', 'Quick test: "individual params: 12, canonical params: 14,976, ratio 0.08% (1248x reduction)". Consistent with EQ-04?'),
    'EQ-06': ('003_cfb6f10add0ba6bf.txt', 'SparseAttention keeps the top-k (k = 5) neighbours per example: "O(N.k) vs O(N^2)". Check complexity of the documented forward pass, not only of the attention that survives.'),
    'EQ-07': ('003_cfb6f10add0ba6bf.txt', 'Shared encoder: "1 shared forward pass" instead of N separate passes: speed.'),
    'EQ-08': ('003_cfb6f10add0ba6bf.txt', 'Group-aware homotopy distance d_H = E_{x,g}[|f*(x) - f_i(x)|^2 + |f*(g.x) - g.f*(x)|^2] "is G-invariant"; its equivariance term vanishes for equivariant f*.'),
    'EQ-09': ('003_cfb6f10add0ba6bf.txt', 'Two-phase training: phase 1 fits examples, phase 2 collapses the homotopy distance by 99.999% (60,913 -> 594 -> 0.0055) while the canonical loss falls (421 -> 7 -> 0.10). Reproduce the shape of this on synthetic data.'),
    'EQ-10': ('003_cfb6f10add0ba6bf.txt', '"Fix 2: pooled features caching": the adapter wrapper reuses pooled features cached (detached) by the last forward pass. Check that the wrapper\'s output for an input equals a fresh computation on that input, and whether gradients reach the parameters that produced the pooled features.'),
    'EFF-01': ('004_7701952726fa4164.txt', 'StridedAttention: O(n^2/stride) time and memory.'),
    'EFF-02': ('004_7701952726fa4164.txt', 'LocalGlobalAttention: O(n.w) + O(n.g).'),
    'EFF-03': ('004_7701952726fa4164.txt', 'CrossMemoryAttention: O(n.m); residual switch; fuse_with_memory(fusion_ratio): 0 = local only, 1 = memory only.'),
    'EFF-04': ('004_7701952726fa4164.txt', 'PerformerAttention (FAVOR+): O(n.r) and "no accuracy loss for long sequences"; "more features = more accurate". Also offered with kernel_type \'elu\' / \'relu\'.'),
    'EFF-05': ('004_7701952726fa4164.txt', 'MambaLayer: O(n), "efficient even for very long sequences".'),
    'EFF-06': ('004_7701952726fa4164.txt', 'Efficiency table: Standard slow < Strided medium < Local+Global fast < Performer, Mamba very fast; memory O(n^2) / O(n^2/k) / O(n.w) / O(n) / O(n).'),
    'EFF-07': ('004_7701952726fa4164.txt', 'Memory per layer, batch 1: Standard (n = 1024) ~1.5 GB, Strided (stride 4) ~0.4 GB, Performer ~0.2 GB, Mamba ~0.15 GB.'),
    'EFF-08': ('004_7701952726fa4164.txt', 'Speed, batch 1: Standard (n = 512) ~50 ms, Strided (n = 512) ~15 ms, Performer (n = 8192) ~80 ms, Mamba (n = 8192) ~60 ms ("approximate, vary by hardware": check the ratios here).'),
    'EFF-09': ('004_7701952726fa4164.txt', 'Guidance: standard below 512 tokens, strided / local+global for 512-2048, Performer / Mamba above 2048. Measure the crossover lengths.'),
    'EFF-10': ('004_7701952726fa4164.txt', 'HierarchicalAttentionBlock / LinearAttentionBlock / get_attention: every documented attention_type builds and runs; memory passes through for cross_memory.'),
}

BUILTIN_CLAIM_IDS = frozenset(CLAIM_TEXTS)  # the 60 IDs of CLAIMS.md; plugins add their own below
_CLAIM_ID = re.compile(r"^[A-Z][A-Z0-9]*-[0-9A-Za-z_]+$")
_DEFINED_BY: dict[str, str] = {cid: "reprobench (CLAIMS.md)" for cid in CLAIM_TEXTS}


def claim(claim_id: str, text: str, *, source: str) -> str:
    """Add a claim to the ledger (plugins and TOML claim files): `ACME-01`, what the README says, and
    where it says it. A second definition of an ID is an error naming both places; returns the ID."""
    if not isinstance(claim_id, str) or not _CLAIM_ID.match(claim_id):
        raise ValueError(f"claim id {claim_id!r}: expected PREFIX-NN, an upper-case prefix and a number or name "
                         "(e.g. 'ACME-01')")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"claim {claim_id}: text must be the sentence being checked, got {text!r}")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"claim {claim_id}: source must say where the claim is made (a README, a paper), got {source!r}")
    defined_by = _caller_module()
    if claim_id in CLAIM_TEXTS:
        if CLAIM_TEXTS[claim_id] == (source, text) and _DEFINED_BY.get(claim_id) == defined_by:
            return claim_id  # the same module imported twice
        raise ValueError(f"claim {claim_id} defined by {defined_by} clashes with the claim of the same ID defined by "
                         f"{_DEFINED_BY.get(claim_id, '?')}; choose another ID prefix")
    CLAIM_TEXTS[claim_id] = (source, text)
    _DEFINED_BY[claim_id] = defined_by
    return claim_id


def _caller_module() -> str:
    import inspect

    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back
        return caller.f_globals.get("__name__", "?") if caller is not None else "?"
    finally:
        del frame
