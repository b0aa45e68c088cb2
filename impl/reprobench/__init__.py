"""reprobench: reference and optimized ML building blocks, measured against their documents."""
