"""The engine stands alone: importing any of its modules loads no integration package."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import aligners
for module in pkgutil.walk_packages(aligners.__path__, "aligners."):
    importlib.import_module(module.name)
integrations = ("langchain_aligners", "llamaindex_aligners")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in integrations)
print(leaked)
"""


def test_engine_imports_no_integration_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_default_generator_speaks_the_chat_model_interface(tiny_lm_dir) -> None:
    from aligners.backends.base import GenerationConfig
    from aligners.backends.transformers import TransformersBackend
    from aligners.data.synth import LocalChatGenerator, _invoke_batch

    generator = LocalChatGenerator(
        TransformersBackend(str(tiny_lm_dir)), GenerationConfig(max_new_tokens=4)
    )
    texts = _invoke_batch(generator, ["name a topic", "another one"])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_the_remote_inspector_lives_with_the_inspectors() -> None:
    from aligners.backends.openai import RemoteClassifierInspector as old_path
    from aligners.inspector import RemoteClassifierInspector

    assert old_path is RemoteClassifierInspector
    assert RemoteClassifierInspector.__module__ == "aligners.inspector.remote"
