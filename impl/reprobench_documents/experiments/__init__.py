"""Experiments, one module per family; each function is registered with @experiment(ID)."""
