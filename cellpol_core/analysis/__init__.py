"""Polarity statistics of vector tables: circular and spherical statistics, batch analysis, plots.

Works on vector tables only, so it does not depend on ``detection``
(an import-linter contract checks this).
"""
