"""Quiet by default: the CLI hides the libraries' progress bars and warnings.

Loading a model prints transformers' "Loading weights" bars, huggingface_hub download bars,
deprecation warnings and tokenizer notices on stderr; none of it tells a CLI user anything.
``aligners --verbose ...`` (or ``ALIGNERS_VERBOSE=1``) shows it all again. The CLI's own bars
(``align --input``, ``eval``, ``train``) and the engine's log warnings are unaffected.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Environment read when the libraries are first imported (set only where the user set nothing).
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence library progress bars and warnings while the block runs.

    Environment variables and warning filters are restored afterwards. Libraries already
    imported are silenced through their own switches and restored too; one first imported
    inside the block keeps its quiet settings for the rest of the process (the CLI is one).
    """
    saved_env = {key: os.environ.get(key) for key in QUIET_ENV}
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)  # the user's own setting wins
    restore = _silence_loaded_libraries()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for key, previous in saved_env.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        for undo in reversed(restore):
            undo()


def _silence_loaded_libraries() -> list[Callable[[], None]]:
    """Turn off bars and warnings of libraries imported already; return how to undo it."""
    undo: list[Callable[[], None]] = []
    if "transformers.utils.logging" in sys.modules:
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity(logging.ERROR)
        hf_logging.disable_progress_bar()
        undo.append(lambda: hf_logging.set_verbosity(level))
        if bars:
            undo.append(hf_logging.enable_progress_bar)
    if "huggingface_hub.utils" in sys.modules:
        from huggingface_hub import utils as hub_utils

        if not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()
            undo.append(hub_utils.enable_progress_bars)
    return undo
