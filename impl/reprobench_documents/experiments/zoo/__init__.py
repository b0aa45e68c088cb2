"""ZOO-01 .. ZOO-07: the attention zoo of "Neural Network Optimizations and Embeddings"
(documents/002_3edd67eb5ef57768.txt): drop-in compatibility, adaptive span cost, MyelinatedLayer's masks,
RelativeForce's memory, Refiner's convergence, IntegratedAttention's windows, and how much computation
the content-dependent gates and jumps really skip (and whether they can be learned).
One module per claim; _common.py holds pair (a reference module and its optimized twin with equal weights)."""
