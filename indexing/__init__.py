"""Indexing: the volume walker, the indexer, its leadership and its runs.

A feature app: it imports dpd, never another feature app (dpd/__init__.py).
"""
