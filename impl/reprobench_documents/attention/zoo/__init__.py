"""The attention zoo of "Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt):
BaseAttention, AdaptiveSpan, MyelinatedLayer, RelativeForce, Refiner, IntegratedAttention (ZOO-01..07).
Each module registers one component (or a documented variant) named ``attention.zoo_*``."""
