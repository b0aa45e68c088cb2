"""Experiments for DCAL-01 … DCAL-11 ("Dual Cross-Attention Model Optimizations", documents/001_128d0a2e45dbf7cd.txt).

Sizes. The document's setting is DeiT-Small (dim 384, 12 blocks, 6 heads) fine-tuned at 448×448,
i.e. N = 785 tokens. Where that fits the 40 s budget on one core we use it (rollout benchmark,
parameter bytes, the PWCA block); a full training step is measured under FakeTensorMode with the
DeiT-Small width at 448×448 but 2 blocks (every quantity compared is per block, so the ratio does
not depend on depth); timing whole-model evaluation uses `vit_mini_patch16` (dim 96, 12 blocks,
3 heads, 224×224, N = 197), which keeps DeiT-Small@448's N / dim ≈ 2 — the ratio that decides
how much of an evaluation the rollout is. Each experiment's evidence names its sizes.
"""
