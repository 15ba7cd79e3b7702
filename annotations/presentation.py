"""What a product page shows of a product's metadata.

Metadata documents are free-form YAML: any key may be missing or have an
unexpected type, so every value is read defensively rather than trusted.
"""

from __future__ import annotations

from typing import Any

from dpd.models import DataProduct


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def product_summary(product: DataProduct) -> dict[str, Any]:
    """Key metadata for the page header, and the product's declared files."""
    document = _mapping(product.metadata)
    obscore = _mapping(document.get("obscore"))
    context = _mapping(document.get("context"))
    files = document.get("files")
    return {
        "execution_block": product.execution_block,
        "date_created": product.date_created,
        "dataproduct_type": obscore.get("dataproduct_type"),
        "instrument": obscore.get("instrument_name"),
        "access_group": product.access_group,
        "intent": context.get("intent"),
        "observer": context.get("observer"),
        "notes": context.get("notes"),
        "dataproduct_file": product.dataproduct_file,
        "metadata_file": product.metadata_file,
        "files": [
            {
                "path": item.get("path"),
                "status": item.get("status"),
                "description": item.get("description"),
            }
            for item in (files if isinstance(files, list) else [])
            if isinstance(item, dict)
        ],
    }
