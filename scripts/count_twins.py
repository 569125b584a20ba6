"""Two code-size reports for issue 24, from the AST alone (nothing is imported).

1. Sync/async twins: in one scope (a module or a class body), a function ``X`` paired with an
   async counterpart named ``aX``, ``X_async``, ``async_X`` or, for a private ``_X``, ``_aX``
   (``__iter__`` pairs with ``__aiter__``). A pair's size is the line count of both definitions
   (decorators excluded; nested functions count in their parent). Nested functions are not
   paired on their own: they are inside a pair already, or not twins.
2. Long functions: every function or method (nested ones too) over ``--max-lines`` lines.

    python scripts/count_twins.py                 # both reports over the default paths
    python scripts/count_twins.py --twins-only    # the twin pairs and their total
    python scripts/count_twins.py --long-only --max-lines 120 shared/aligners

Twins are counted over the three packages (``shared/aligners``, ``langchain_aligners``,
``llamaindex_aligners``); long functions over those plus ``scripts`` and ``benchmarks``
(tests are excluded from both).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWIN_PATHS = ("shared/aligners", "langchain_aligners", "llamaindex_aligners")
LONG_PATHS = (*TWIN_PATHS, "scripts", "benchmarks")

Function = ast.FunctionDef | ast.AsyncFunctionDef


def python_files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            if "tests" not in file.relative_to(ROOT).parts:
                yield file


def size(node: Function) -> int:
    return (node.end_lineno or node.lineno) - node.lineno + 1


def async_names(name: str) -> list[str]:
    """The names an async twin of ``name`` may have."""
    if name.startswith("__") and name.endswith("__"):
        return [f"__a{name[2:]}"]
    names = [f"a{name}", f"{name}_async", f"async_{name}"]
    if name.startswith("_"):
        names += [f"_a{name[1:]}", f"_async_{name[1:]}", f"_{name[1:]}_async"]
    return names


def scopes(tree: ast.Module) -> Iterator[tuple[str, list[ast.stmt]]]:
    """The module body and every class body (nested classes too), with a dotted prefix."""
    yield "", tree.body
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}."
                yield name, child.body
                stack.append((name, child))
            elif not isinstance(child, Function):
                stack.append((prefix, child))


def twin_pairs(file: Path) -> Iterator[tuple[str, str, int, int]]:
    tree = ast.parse(file.read_text(), filename=str(file))
    for prefix, body in scopes(tree):
        defs = {node.name: node for node in body if isinstance(node, Function)}
        for name, node in defs.items():
            for other in async_names(name):
                twin = defs.get(other)
                if twin is not None:
                    yield f"{prefix}{name}", f"{prefix}{other}", size(node), size(twin)
                    break


def long_functions(file: Path, limit: int) -> Iterator[tuple[str, int, int]]:
    tree = ast.parse(file.read_text(), filename=str(file))

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, Function):
                if size(child) > limit:
                    yield f"{prefix}{child.name}", child.lineno, size(child)
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def report_twins(paths: list[str]) -> int:
    total = pairs = 0
    print("== sync/async twins (sync + async lines) ==")
    for file in python_files(paths):
        rel = file.relative_to(ROOT)
        for sync, twin, a, b in twin_pairs(file):
            pairs += 1
            total += a + b
            print(f"{a + b:5d}  {rel}: {sync} ({a}) / {twin.rsplit('.', 1)[-1]} ({b})")
    print(f"twin pairs: {pairs}; twin lines: {total}")
    return total


def report_long(paths: list[str], limit: int) -> int:
    count = 0
    print(f"== functions over {limit} lines ==")
    for file in python_files(paths):
        rel = file.relative_to(ROOT)
        for name, line, n in long_functions(file, limit):
            count += 1
            print(f"{n:5d}  {rel}:{line} {name}")
    print(f"functions over {limit} lines: {count}")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="files or folders (relative to the repo root)")
    parser.add_argument("--max-lines", type=int, default=120)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--twins-only", action="store_true")
    only.add_argument("--long-only", action="store_true")
    args = parser.parse_args()
    if not args.long_only:
        report_twins(args.paths or list(TWIN_PATHS))
    if not args.twins_only:
        if not args.long_only:
            print()
        report_long(args.paths or list(LONG_PATHS), args.max_lines)


if __name__ == "__main__":
    main()
