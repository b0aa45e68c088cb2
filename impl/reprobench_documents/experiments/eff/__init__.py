"""Experiments for EFF-01 … EFF-10 ("Efficient Attention Mechanisms", documents/004_7701952726fa4164.txt).

Complexity claims are checked on FLOPs and tensor peaks fitted over an n sweep in FakeTensorMode
(deterministic, any size) and on wall time over a smaller real sweep; the headline performance
figures (speedups at n=8192, the Mamba scan at L=4096, the performer-pytorch comparison) are
recorded in the measured values. Time is measured on one thread; where only ratios matter we use
fewer heads than the document's 12 (the attention cores' costs are proportional to the head count,
so ratios do not change) and say so.
"""
