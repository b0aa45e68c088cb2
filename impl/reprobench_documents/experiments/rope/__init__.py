"""ROPE-01 … ROPE-07: the rotary embeddings of "Neural Network Optimizations and Embeddings".

Source: documents/002_3edd67eb5ef57768.txt, "nDimensional Rotary Embedding" (class RotaryEmbedding) and the
"mini version" (CompactRotation). The document's code runs through impl/reprobench_documents/rotary/document.py, whose
DEVIATIONS (changes needed to make it run) are attached to every measured outcome. Property checks run in
float64 so that any error above ~1e-9 is the construction's, not rounding; timings are float32,
forward only, one thread, measured interleaved.
One module per claim; shared constants and helpers (_orthogonality, _figure) are in _common.py.
"""
