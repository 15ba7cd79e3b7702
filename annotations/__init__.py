"""Annotations: notes on data products, their API, pages and admin.

A feature app: it imports dpd, never another feature app (dpd/__init__.py).
"""
