"""The layering (docs/engine.md, "Layers"): the engine stands alone, its packages import only
packages below them, and the integrations import only the top-level ``aligners`` package.

``make lint`` checks the same with import-linter (the contracts in pyproject.toml); these tests
keep the rules in the test suite too, on the real import graph (grimp, import-linter's own).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, pkgutil, sys
import aligners
for module in pkgutil.walk_packages(aligners.__path__, "aligners."):
    importlib.import_module(module.name)
integrations = ("langchain_aligners", "llamaindex_aligners")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in integrations)
print(leaked)
"""

INTEGRATIONS = ("langchain_aligners", "llamaindex_aligners")


@pytest.fixture(scope="module")
def graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("aligners", *INTEGRATIONS)


def test_engine_imports_no_integration_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_integrations_import_only_the_top_level_package(graph) -> None:
    import aligners

    reached = {
        (module, imported)
        for package in INTEGRATIONS
        for module in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("aligners.")
    }
    assert reached == set(), sorted(reached)
    # ... and every name they take from it is exported on purpose (read from the source: the
    # graph knows modules, not names).
    taken = set()
    for package in INTEGRATIONS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "aligners":
                    for alias in node.names:
                        assert alias.name in aligners.__all__, (path.name, alias.name)
                        taken.add(alias.name)
    assert {"Squad", "OnFlag", "BlockedMessage", "resolve_request_inspector"} <= taken, taken


def test_backends_import_no_inspector(graph) -> None:
    """The old circle backends.openai <-> inspector.remote is gone."""
    assert not graph.chain_exists(
        importer="aligners.backends", imported="aligners.inspector", as_packages=True
    )
    assert graph.chain_exists(
        importer="aligners.inspector", imported="aligners.backends", as_packages=True
    )  # the direction that is allowed, so the check above can fail


def test_the_remote_inspector_lives_with_the_inspectors() -> None:
    from aligners.inspector import RemoteClassifierInspector

    assert RemoteClassifierInspector.__module__ == "aligners.inspector.remote"
    # The old path still works for now, with a warning that names the new one.
    with pytest.warns(DeprecationWarning, match="import it from aligners.inspector"):
        from aligners.backends.openai import RemoteClassifierInspector as old_path
    assert old_path is RemoteClassifierInspector
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from aligners.backends.openai import OpenAIBackend  # other names do not warn

    assert OpenAIBackend.__module__ == "aligners.backends.openai"


#: ``lint-imports`` of this environment (beside its python), or one on PATH.
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports"
)


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (dev extra)")
def test_make_lint_contracts_are_kept() -> None:
    assert LINT_IMPORTS is not None
    done = subprocess.run(
        [LINT_IMPORTS, "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout, done.stdout


def test_default_generator_speaks_the_chat_model_interface(tiny_lm_dir) -> None:
    from aligners.backends.base import GenerationConfig
    from aligners.backends.transformers import TransformersBackend
    from aligners.data.synth import LocalChatGenerator, _invoke_batch

    generator = LocalChatGenerator(
        TransformersBackend(str(tiny_lm_dir)), GenerationConfig(max_new_tokens=4)
    )
    texts = _invoke_batch(generator, ["name a topic", "another one"])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
