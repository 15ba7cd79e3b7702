"""Which environment variables the project's code reads, found in its source
(for tests/test_configuration_docs.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dpd", "indexing", "annotations", "dlm_bridge")
READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "getenv"}
ENVIRON_METHODS = {"get", "setdefault", "pop"}


def source_files() -> list[Path]:
    files = [ROOT / "manage.py"]
    for package in PACKAGES:
        files += [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]
    return files


def _string_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Module-level NAME = "VALUE" (or "A" + B) assignments, by NAME, to
    resolve env_str(database_env.UPSTREAM_HOST, ...)."""
    found: dict[str, str] = {}

    def value(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return found.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = value(node.left), value(node.right)
            return left + right if left is not None and right is not None else None
        return None

    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and (text := value(node.value)) is not None:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = text
    return found


# WSGI applications' `environ` holds the request, not the process environment.
WSGI_MODULES = {"dpd/wsgi.py"}


def _is_environ(node: ast.AST, module: str) -> bool:
    """os.environ, or a parameter named environ (a mapping standing for it,
    e.g. database_env.upstream_password(environ))."""
    if isinstance(node, ast.Name):
        return node.id == "environ" and module not in WSGI_MODULES
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def environment_reads() -> dict[str, set[str]]:
    """{variable: {files reading it}}."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in source_files()}
    constants = _string_constants(trees)

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Attribute):
            return constants.get(node.attr)
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        return None

    reads: dict[str, set[str]] = {}
    for path, tree in trees.items():
        module = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in READERS or (
                    called in ENVIRON_METHODS
                    and isinstance(func, ast.Attribute)
                    and _is_environ(func.value, module)
                ):
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and _is_environ(node.value, module):
                key = node.slice
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.ops[0], ast.In | ast.NotIn)
                and _is_environ(node.comparators[0], module)
            ):
                key = node.left
            name = name_of(key) if key is not None else None
            if name:
                reads.setdefault(name, set()).add(module)
    return reads
