"""EQ-01 … EQ-10: equivariant conv and its cache, top-k sparse attention, shared encoder + adapters,
group-aware homotopy distance.

Source: "Sparse Attention + Group-Aware Homotopy" (documents/003_cfb6f10add0ba6bf.txt). Components live in
impl/reprobench_documents/equivariant/. All data are synthetic and made here: random grids labelled by a fixed random
C4-equivariant teacher network.

Modules: filter_bank_cache (EQ-01, EQ-02), c4_equivariance (EQ-03), parameter_counts (EQ-04, EQ-05),
topk_complexity (EQ-06), shared_forward_speed (EQ-07), homotopy_invariance (EQ-08), two_phase_collapse (EQ-09),
cached_pooled_features (EQ-10); helpers shared by several in _common.
"""
