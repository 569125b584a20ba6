"""Styled answers: the local generator answering harmful and safe requests in many styles.

Part of the traffic recipe (:mod:`aligners.data.traffic_recipe`): each request gets one style
family (:mod:`aligners.data.styles`), and both sides of a contrast pair get the same one, so the
only thing that tells the two answers apart is what they are about.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aligners.backends.base import GenerationBackend
from aligners.data.io import append_jsonl
from aligners.data.safety_sources import Request
from aligners.data.styles import StyleFamily, finish_answer, generation_config


@dataclass(frozen=True)
class StyledRequest:
    """A request and the style family its answer is written in."""

    request: Request
    style: StyleFamily

    @property
    def key(self) -> str:
        raw = f"{self.style.name}\x00{self.request.text}\x00{self.style.max_new_tokens}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]


def styled_prompt(backend: GenerationBackend, item: StyledRequest) -> tuple[str, str]:
    """The raw prompt (chat template + forced opening) and the opening for one request."""
    messages = [{"role": "system", "content": item.style.system}] if item.style.system else []
    messages.append({"role": "user", "content": item.request.text})
    render = getattr(backend, "render", None)
    if render is None:  # a forced opening needs the exact prompt text, i.e. a local chat template
        raise TypeError(
            f"styled answers need a local backend that renders chat templates (e.g. "
            f"TransformersBackend), got {type(backend).__name__}"
        )
    rendered: str = render(messages)
    opening = item.style.opening(item.request.text)
    return rendered + opening, opening


def generate_styled_answers(
    backend: GenerationBackend,
    items: Sequence[StyledRequest],
    cache_file: Path,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, str]:
    """Every request's answer in its style (opening included), keyed by :attr:`StyledRequest.key`;
    resumable through ``cache_file`` (one JSON line per answer)."""
    from tqdm.auto import tqdm

    done: dict[str, str] = {}
    if cache_file.exists():
        for line in cache_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row["answer"]
    todo = [item for item in items if item.key not in done]
    by_style: dict[str, list[StyledRequest]] = {}
    for item in todo:
        by_style.setdefault(item.style.name, []).append(item)
    bar = tqdm(total=len(todo), desc="styled answers", disable=not progress or not todo)
    for group in by_style.values():
        config = generation_config(group[0].style, batch_size)
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            prompts = [styled_prompt(backend, item) for item in batch]
            texts = backend.generate([p for p, _ in prompts], config)
            rows = []
            for item, (_, opening), text in zip(batch, prompts, texts):
                answer = finish_answer(item.style, opening, text)
                done[item.key] = answer
                rows.append(
                    {
                        "key": item.key,
                        "request": item.request.text,
                        "style": item.style.name,
                        "answer": answer,
                    }
                )
            append_jsonl(cache_file, rows)
            bar.update(len(batch))
    bar.close()
    return {item.key: done[item.key] for item in items}
