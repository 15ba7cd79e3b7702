"""The Data Lifecycle Manager bridge (read-only DLM tables).

A feature app: it imports dpd, never another feature app (dpd/__init__.py).
"""
