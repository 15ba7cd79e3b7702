"""Reads of the DLM's tables go to the `dlm` alias; nothing is ever written there.

Three guards, each enough alone: this router refuses writes to the DLM
models (an exception, never a silent redirect to another database), no
migration runs on the `dlm` alias nor for the DLM models (so `migrate` and
`flush` leave the DLM alone), and the `dlm` connection itself is read-only in
the server (default_transaction_read_only, dpd/settings.py).
"""

from __future__ import annotations

from django.db import DatabaseError

DLM_ALIAS = "dlm"
_DLM_MODELS = {"location", "storage", "dataitem"}


class DlmReadOnly(DatabaseError):
    """A write to the DLM's tables was attempted: the DLM is never written."""


def is_dlm_model(model) -> bool:
    return model._meta.app_label == "dlm_bridge" and model._meta.model_name in _DLM_MODELS


class DlmRouter:
    def db_for_read(self, model, **hints):
        return DLM_ALIAS if is_dlm_model(model) else None

    def db_for_write(self, model, **hints):
        if is_dlm_model(model):
            raise DlmReadOnly(f"the DLM's {model._meta.db_table} is read-only for this service")
        return None

    def allow_relation(self, obj1, obj2, **hints):
        if is_dlm_model(type(obj1)) and is_dlm_model(type(obj2)):
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if db == DLM_ALIAS:
            return False
        if app_label == "dlm_bridge" and model_name in _DLM_MODELS:
            return False
        return None
