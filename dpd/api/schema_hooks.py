"""drf-spectacular hooks for the SKA DPD API's routes."""

from __future__ import annotations


def drop_optional_trailing_slash(endpoints: list[tuple], **kwargs) -> list[tuple]:
    """Document `^status/?$`-style routes at their canonical path, `/status`.

    The compatibility routes answer with and without a trailing slash
    (reference 1.1); the contract, and so the schema, names them without it.
    """
    fixed = []
    for path, path_regex, method, callback in endpoints:
        if path_regex.endswith("/?$") and path.endswith("/"):
            path = path[:-1]
        fixed.append((path, path_regex, method, callback))
    return fixed
