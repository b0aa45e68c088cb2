"""DCAL — dual cross-attention learning (Zhu et al., CVPR 2022) as described in "Dual Cross-Attention
Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt), claims DCAL-01 … DCAL-11.

One module per component: rollout (attention rollout, full product vs CLS-row chain), pwca (before:
weights copied into a fresh module per call; after: SA's qkv used directly), glca (top-R queries by
rollout), rollout_cache (the documented statistics-hash cache and an exact cache), uncertainty_loss
(Kendall et al.), model (DualAttentionModel on the small ViT of vit.py).
"""
