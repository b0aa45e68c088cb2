"""Claims ledger, experiments, verdict rules and the report writer."""
