"""reprobench judging three real PyPI packages, from their READMEs and public APIs only.

Each module holds an independent reference written from the math the package's README names, the
package's own code wrapped as the optimized twin, the registration, and the claims that need code.
"""
