"""Copy-aware greedy decoding: draft the rest of the source answer, verify it in one pass.

An aligner mostly copies the answer it corrects. While the output follows the source, the
decoder feeds the remaining source tokens as a draft and keeps the longest prefix the model
agrees with (greedy argmax equals the draft), plus the model's own next token; each verified
span costs one forward pass. After a mismatch it decodes one token at a time until the last few
output tokens re-join the source (an n-gram match), then drafts again. The output is the plain
greedy output, token for token: drafts only decide how many positions one pass verifies.

Batches keep one physical KV cache; rows accept different numbers of tokens per step, so a row's
rejected draft positions stay in the cache as masked holes, each row carries its own position
ids, columns no row uses any more are cropped, and finished rows are dropped from the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CopyDecodingOptions(BaseModel):
    """How drafts are sized; the defaults suit a 135M model on CPU (wide passes cost compute)."""

    model_config = ConfigDict(frozen=True)

    #: Draft length at the start and after re-joining the source; grows on full acceptance.
    initial_draft: int = Field(default=10, gt=0)
    max_draft: int = Field(default=256, gt=0)
    growth: int = Field(default=4, gt=1)
    #: Draft length after a rejection (at least; the accepted length if longer).
    min_draft: int = Field(default=2, gt=0)
    #: n-gram sizes tried, longest first, to re-join the source after a mismatch.
    ngrams: tuple[int, ...] = (3, 2)
    #: Draft the source inside the prompt pass (floor cost for copies; off when streaming, so
    #: the first token is not delayed).
    draft_in_prefill: bool = True
    #: A batched pass is at most this wasteful: drafts are cut so that real tokens fill at least
    #: this share of the padded batch (a row far ahead must not make the others pay).
    min_efficiency: float = Field(default=0.5, gt=0.0, le=1.0)


@dataclass
class CopyDecodingStats:
    """What one decoding call did (for benchmarks and tests)."""

    forward_passes: int = 0
    rows_fed: int = 0  # batch rows over all passes: finished rows stop counting
    fed_tokens: int = 0  # padded batch positions fed, the compute actually paid
    drafted: int = 0
    accepted_drafts: int = 0


@dataclass
class _Row:
    index: int
    prompt: list[int]
    source: list[int]
    table: dict[tuple[int, ...], list[int]]
    draft_len: int
    pos: int | None  # source index the next output token is expected to equal; None: unaligned
    anchor: int = 0  # last aligned source index, to prefer re-joining ahead of it
    out: list[int] = field(default_factory=list)
    valid: int = 0  # tokens of this row whose keys and values are in the cache
    done: bool = False


def ngram_table(tokens: Sequence[int], sizes: Sequence[int]) -> dict[tuple[int, ...], list[int]]:
    """Where every n-gram of ``tokens`` starts, for each size in ``sizes``."""
    table: dict[tuple[int, ...], list[int]] = {}
    for n in sizes:
        for start in range(len(tokens) - n + 1):
            table.setdefault(tuple(tokens[start : start + n]), []).append(start)
    return table


def batch_width(lengths: Sequence[int], min_efficiency: float) -> int:
    """The widest pass in which real tokens fill at least ``min_efficiency`` of the batch."""
    if not lengths:
        return 1
    rows = len(lengths)
    candidates = sorted(set(lengths), reverse=True)
    for i, width in enumerate(candidates):
        longer = sum(1 for n in lengths if n >= width)
        shorter = sum(n for n in lengths if n < width)
        if shorter + longer * width >= min_efficiency * rows * width:
            return width
        # Between this candidate and the next one down the fill only falls with the width.
        below = candidates[i + 1] if i + 1 < len(candidates) else 1
        room = min_efficiency * rows - longer
        if room > 0 and int(shorter / room) > below:
            return min(int(shorter / room), width)
    return max(min(lengths), 1)


def _forward_names(model: Any) -> tuple[str, ...]:
    # transformers 5 calls the cache argument `cache`; 4.x called it `past_key_values`.
    decoder = model.get_decoder()
    params = inspect.signature(decoder.forward).parameters
    return ("cache",) if "cache" in params else ("past_key_values",)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # transformers 4.x
        return DynamicCache()


def supports_copy_decoding(model: Any) -> bool:
    """Whether the model exposes a decoder, output embeddings and a croppable dynamic cache."""
    try:
        if model.get_output_embeddings() is None or model.get_decoder() is None:
            return False
        cache = _new_cache(model)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return False
    layers = getattr(cache, "layers", None)
    # Sliding-window or recurrent layers cannot hold masked holes; plain full attention can.
    return not layers or all(type(layer).__name__ == "DynamicLayer" for layer in layers)


class CopyDecoder:
    """Greedy decoding of a batch of token prompts with drafts from per-row source tokens.

    ``stop`` is a transformers ``StopStringCriteria`` (or None): it is evaluated after every
    accepted token exactly as ``generate`` does, so output ends where plain greedy ends.
    """

    def __init__(
        self,
        model: Any,
        *,
        max_new_tokens: int,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        stop: Any = None,
        options: CopyDecodingOptions | None = None,
    ) -> None:
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.eos = set(eos_token_ids)
        self.pad = pad_token_id
        self.stop = stop
        self.options = options or CopyDecodingOptions()
        self.stats = CopyDecodingStats()
        self._cache_name = _forward_names(model)[0]

    # -- public -----------------------------------------------------------------------------------

    def generate(
        self, prompts: Sequence[Sequence[int]], sources: Sequence[Sequence[int] | None]
    ) -> list[list[int]]:
        """The new tokens of every prompt (ending with EOS or a stop where plain greedy does)."""
        outputs: list[list[int]] = [[] for _ in prompts]
        for spans in self.spans(prompts, sources):
            for index, tokens in spans:
                outputs[index].extend(tokens)
        return outputs

    def spans(
        self, prompts: Sequence[Sequence[int]], sources: Sequence[Sequence[int] | None]
    ) -> Iterator[list[tuple[int, list[int]]]]:
        """Yield, after every forward pass, the tokens each row accepted in it."""
        import torch

        opts = self.options
        rows = []
        for i, (prompt, source) in enumerate(zip(prompts, sources, strict=True)):
            if not prompt:
                raise ValueError("copy-aware decoding needs at least one prompt token per row")
            # Without a source answer the prompt is the lookup table (prompt-lookup decoding),
            # and there is no known start: drafting begins after the first n-gram match.
            table_tokens = list(source) if source is not None else list(prompt)
            rows.append(
                _Row(
                    index=i,
                    prompt=list(prompt),
                    source=table_tokens,
                    table=ngram_table(table_tokens, opts.ngrams),
                    draft_len=opts.initial_draft,
                    pos=0 if source is not None and table_tokens else None,
                )
            )
        if not rows:
            return
        device = self.model.device
        cache = _new_cache(self.model)
        mask = torch.zeros((len(rows), 0), dtype=torch.bool, device=device)
        prefill = True
        with torch.inference_mode():
            while rows:
                feeds, bases, drafts = [], [], []
                for row in rows:
                    draft = self._draft(row) if (opts.draft_in_prefill or not prefill) else []
                    drafts.append(draft)
                    if prefill:
                        feeds.append(row.prompt + draft)
                        bases.append(len(row.prompt) - 1)
                    else:
                        feeds.append([row.out[-1]] + draft)
                        bases.append(0)
                if not prefill and len(rows) > 1:
                    width = batch_width([len(f) for f in feeds], opts.min_efficiency)
                    feeds = [f[:width] for f in feeds]
                    drafts = [d[: width - 1] for d in drafts]
                width = max(len(f) for f in feeds)
                ids = torch.full((len(rows), width), self.pad, dtype=torch.long, device=device)
                fresh = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
                for r, feed in enumerate(feeds):
                    ids[r, : len(feed)] = torch.tensor(feed, dtype=torch.long, device=device)
                    fresh[r, : len(feed)] = True
                offsets = torch.tensor([row.valid for row in rows], device=device)
                positions = offsets[:, None] + torch.arange(width, device=device)[None, :]
                attention = torch.cat([mask, fresh], dim=1)
                hidden = self.model.get_decoder()(
                    input_ids=ids,
                    attention_mask=attention.long(),
                    position_ids=positions,
                    use_cache=True,
                    **{self._cache_name: cache},
                ).last_hidden_state
                self.stats.forward_passes += 1
                self.stats.rows_fed += len(rows)
                self.stats.fed_tokens += ids.numel()
                # Logits only where they verify something: the last prompt token and the drafts.
                picks = [(r, bases[r] + j) for r, d in enumerate(drafts) for j in range(len(d) + 1)]
                index_r = torch.tensor([p[0] for p in picks], device=device)
                index_c = torch.tensor([p[1] for p in picks], device=device)
                logits = self.model.get_output_embeddings()(hidden[index_r, index_c])
                greedy = logits.argmax(dim=-1).tolist()
                spans: list[tuple[int, list[int]]] = []
                keep_cols = []
                start = 0
                for r, row in enumerate(rows):
                    draft = drafts[r]
                    preds = greedy[start : start + len(draft) + 1]
                    start += len(draft) + 1
                    matched = 0
                    while matched < len(draft) and preds[matched] == draft[matched]:
                        matched += 1
                    self.stats.drafted += len(draft)
                    self.stats.accepted_drafts += matched
                    kept = bases[r] + 1 + matched  # fed positions whose keys stay valid
                    keep_cols.append(kept)
                    row.valid += kept
                    accepted = self._accept(row, preds[: matched + 1])
                    if accepted:
                        spans.append((row.index, accepted))
                    if not row.done:
                        self._realign(row, draft, matched)
                if spans:
                    yield spans
                prefill = False
                cols = torch.arange(width, device=device)[None, :]
                fresh &= cols < torch.tensor(keep_cols, device=device)[:, None]
                mask = torch.cat([mask, fresh], dim=1)
                alive = [r for r, row in enumerate(rows) if not row.done]
                if len(alive) < len(rows):
                    rows = [rows[r] for r in alive]
                    if not rows:
                        break
                    selected = torch.tensor(alive, device=device)
                    cache.batch_select_indices(selected)
                    mask = mask[selected]
                # Columns past every row's last valid one are rejected drafts: drop them.
                used = int(mask.any(dim=0).nonzero().max().item()) + 1
                if used < mask.shape[1]:
                    cache.crop(used - mask.shape[1])
                    mask = mask[:, :used]

    # -- steps ------------------------------------------------------------------------------------

    def _draft(self, row: _Row) -> list[int]:
        if row.pos is None:
            return []
        # A row can accept at most the tokens it has left; the last one is the model's own.
        budget = self.max_new_tokens - len(row.out) - 1
        return row.source[row.pos : row.pos + max(min(row.draft_len, budget), 0)]

    def _accept(self, row: _Row, tokens: list[int]) -> list[int]:
        """Append tokens one by one, stopping exactly where greedy ``generate`` would."""
        import torch

        taken: list[int] = []
        for token in tokens:
            row.out.append(token)
            taken.append(token)
            if len(row.out) >= self.max_new_tokens or token in self.eos:
                row.done = True
            elif self.stop is not None:
                window = (row.prompt + row.out)[-self.stop.maximum_token_len :]
                if bool(self.stop(torch.tensor([window]), None)[0]):
                    row.done = True
            if row.done:
                break
        return taken

    def _realign(self, row: _Row, draft: list[int], matched: int) -> None:
        """Track where the output is in the source; adapt the draft length."""
        opts = self.options
        if draft:
            if matched == len(draft):
                row.draft_len = min(row.draft_len * opts.growth, opts.max_draft)
            else:
                row.draft_len = max(opts.min_draft, matched)
        if row.pos is not None:
            expected = row.pos + matched
            if expected < len(row.source) and row.out[-1] == row.source[expected]:
                row.pos = expected + 1
                row.anchor = row.pos
                return
            row.anchor = expected + 1
            row.pos = None
        for n in opts.ngrams:
            if len(row.out) < n:
                continue
            starts = row.table.get(tuple(row.out[-n:]))
            if starts:
                ahead = [s for s in starts if s + n >= row.anchor]
                start = ahead[0] if ahead else starts[-1]
                if start + n < len(row.source):
                    row.pos = start + n
                    row.anchor = row.pos
                    return
