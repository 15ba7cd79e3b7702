"""The home page at `/`: what an operator or a newcomer sees first.

Part of dpd's interface (dpd/__init__.py): it reads the catalogue, the
indexing runs and the annotations, each through what its app offers, and
counts only what the caller may see (dpd.access.visible_products).
"""
