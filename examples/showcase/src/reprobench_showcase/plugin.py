"""The plugin reprobench imports (entry point `reprobench.plugins`, or `--plugin reprobench_showcase.plugin`).

Importing the three modules registers their components and Python claims; the claims that need no
code are in claims.toml beside the package.
"""
from reprobench_showcase import adam_mini_optimizer, local_window_attention, memory_efficient_attention  # noqa: F401
