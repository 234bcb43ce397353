"""Imports of gtn_deploy made inside functions: at most 60, each with a reason.

A function-level import hides an arrow from a reader (and made the package's import circles
invisible). One is kept only for a named reason, written beside it as ``# lazy: <why>``:
``CLI start-up`` (a command pulls in torch only when it runs), ``an optional dependency``,
or ``keeps torch out of a light module``. Everything else is imported at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gtn_deploy"
LIMIT = 60
CATEGORIES = ("CLI start-up", "an optional dependency", "keeps torch out of a light module")


def function_level_imports(package: Path = PACKAGE) -> list[tuple[Path, int, str]]:
    """(file, line, the import's first line) of every Import/ImportFrom inside a function
    body whose module is gtn_deploy's (absolute or relative)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef))
                if in_function and _is_ours(child):
                    found.append((path, child.lineno, lines[child.lineno - 1]))
                visit(child, inside)

        visit(ast.parse(source), False)
    return found


def _is_ours(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "gtn_deploy"
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "gtn_deploy" for a in node.names)
    return False


def _reason(path: Path, line: int) -> str | None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for text in (lines[line - 1], lines[line - 2] if line > 1 else ""):
        if "# lazy: " in text:
            return text.split("# lazy: ", 1)[1].strip()
    return None


def test_at_most_sixty_function_level_imports():
    found = function_level_imports()
    where = "\n".join(f"{p.relative_to(PACKAGE.parent)}:{n}" for p, n, _ in found)
    assert len(found) <= LIMIT, f"{len(found)} function-level imports (limit {LIMIT}):\n{where}"


def test_each_function_level_import_names_its_reason():
    missing = [f"{p.relative_to(PACKAGE.parent)}:{n}: {text.strip()}"
               for p, n, text in function_level_imports()
               if _reason(p, n) not in CATEGORIES]
    assert not missing, ("a function-level import of gtn_deploy without '# lazy: <reason>' "
                         f"({' | '.join(CATEGORIES)}); import it at the top or say why:\n"
                         + "\n".join(missing))
