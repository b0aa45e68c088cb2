"""FAM-01 .. FAM-07: the frequency-adaptive momentum optimizers of
"Neural Network Optimizations and Embeddings" (documents/002_3edd67eb5ef57768.txt).

Every check runs the document's code (impl/reprobench_documents/optim/fam_reference.py, simple_fam.py, fam_schedulers.py)
unless it says otherwise; the corrected variant (impl/reprobench_documents/optim/fam_corrected.py) is measured beside it
where the document's rule has a defect. FAM-03 also carries the step benchmark of the optimized FAM.
One module per claim; shared pieces (the deviations list) are in _common.py.
"""
