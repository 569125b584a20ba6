"""Issue 21 gate experiments on the traffic rows' train/validation splits only (test never read)."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

torch.set_num_threads(1)
from aligners.backends.encoder import SentenceEncoder
from aligners.backends.models import resolve_model
from aligners.data import read_examples
from aligners.inspector.safety_gate import SafetyGateInspector, combine_features
from aligners.training.cross_encoder import _batches, _lower_states, _pad, _run_top
from aligners.training.safety_gate import (
    COMPLIANT,
    SAFE,
    EmbeddingCache,
    _threshold_for_rate,
    by_family,
    fit_logistic,
    gate_metrics,
)

T = Path(sys.argv[1])
OUT = Path(os.environ.get("EXP_OUT", "/tmp/exp21"))
OUT.mkdir(parents=True, exist_ok=True)
which = sys.argv[2:]
rows = [r for r in read_examples(T / "gate_rows.jsonl").records if r.metadata["split"] != "test"]
requests = [json.loads(l) for l in open(T / "requests.jsonl")]
requests = [r for r in requests if r["split"] == "train"]
train = [r for r in rows if r.metadata["split"] == "train"]
val = [r for r in rows if r.metadata["split"] == "validation"]
print(
    "train",
    len(train),
    "val",
    len(val),
    "val compliant",
    sum(r.metadata["kind"] == COMPLIANT for r in val),
)
enc = SentenceEncoder("minilm")
embed = EmbeddingCache(enc, T / "embeddings.pt")
y_mis = lambda part: [int(r.metadata["kind"] == COMPLIANT) for r in part]
results = json.loads((OUT / "results.json").read_text()) if (OUT / "results.json").exists() else {}


def report(name, val_scores, extra=None):
    """val_scores: P(aligned) on val; threshold = flags <=2% of val aligned."""
    aligned = [s for s, r in zip(val_scores, val) if r.metadata["kind"] != COMPLIANT]
    th = _threshold_for_rate(aligned, 0.02)
    m = gate_metrics(val_scores, val, th)
    fam = by_family(val_scores, val, th)
    res = {
        "threshold": th,
        "overall": m,
        "family": {
            f: {k: v[k] for k in ("n", "auroc", "recall_harmful", "aligned_flag_rate")}
            for f, v in fam.items()
        },
    }
    if extra:
        res.update(extra)
    results[name] = res
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print(
        f"== {name}: th {th} AUROC {m['auroc']} F1 {m['f1_harmful']} P {m['precision_harmful']} R {m['recall_harmful']} alignedflag {m['aligned_flag_rate']}"
    )
    for f, v in fam.items():
        print(
            f"   {f:22s} n={v['n']:3d} auroc={v['auroc']} recall={v['recall_harmful']} aff={v['aligned_flag_rate']}"
        )
    return res


# ---- frozen heads (the shipped recipe) ----
def frozen_heads(tr, wd=1e-3, req=True, exclude=frozenset()):
    heads = SafetyGateInspector.build_heads(enc.dimension)
    request_train = (
        [(r["request"], 1 - int(r["label"])) for r in requests if r["request"] not in exclude]
        if req
        else []
    )
    request_train += [
        (r.question, int(r.metadata["kind"] in (COMPLIANT, SAFE)))
        for r in tr
        if r.question and r.metadata.get("writer") != "swapped"
    ]
    targets = {
        "request": request_train,
        "complies": [(r.answer, int(r.metadata["kind"] != SAFE)) for r in tr],
        "content": [(r.answer, int(r.metadata["kind"] == COMPLIANT)) for r in tr],
    }
    for name, pairs in targets.items():
        w, b = fit_logistic(
            embed([t for t, _ in pairs], False), [y for _, y in pairs], weight_decay=wd
        )
        heads[name].weight.data = w.unsqueeze(0)
        heads[name].bias.data = b
    return heads


def head_logits(heads, part):
    q, a = embed([r.question for r in part], False), embed([r.answer for r in part], False)
    with torch.inference_mode():
        return torch.cat([heads["request"](q), heads["complies"](a), heads["content"](a)], -1)


def combo_scores(feat_val, extra_cols=()):
    f = (
        torch.cat([feat_val, *[c.unsqueeze(-1) for c in extra_cols]], -1)
        if extra_cols
        else feat_val
    )
    w, b = fit_logistic(f, y_mis(val), weight_decay=1e-4, balanced=False)
    return [float(x) for x in 1 - torch.sigmoid(f @ w + b)], w, b


heads = frozen_heads(train)
base_feat = combine_features(head_logits(heads, val))
if "base" in which:
    s, w, b = combo_scores(base_feat)
    report("baseline-frozen-gate", s, {"w": w.tolist()})
    for i, n in enumerate(["request", "complies", "content"]):
        pass
    report(
        "content-head-alone", [float(x) for x in 1 - torch.sigmoid(head_logits(heads, val)[:, 2])]
    )

# ---- fine-tuned top layers (cross-encoder / answer-only) ----
src = resolve_model("minilm")
from transformers import AutoModel, AutoTokenizer

tok = AutoTokenizer.from_pretrained(src.path)


def states_for(part, mode, layers=2, max_length=256):
    key = OUT / f"states_{mode}_{layers}_{max_length}.pt"
    table = torch.load(key) if key.exists() else {}
    items = [
        SimpleNamespace(question=(r.question if mode == "pair" else ""), answer=r.answer)
        for r in part
    ]
    keys = [EmbeddingCache.key(i.question + "\x00" + i.answer) for i in items]
    missing = [i for i, k in zip(items, keys) if k not in table]
    if missing:
        model = AutoModel.from_pretrained(src.path)
        st = _lower_states(
            model,
            tok,
            missing,
            SimpleNamespace(trained_layers=layers, max_length=max_length),
            False,
        )
        for i, s in zip(missing, st):
            table[EmbeddingCache.key(i.question + "\x00" + i.answer)] = s.half()
        torch.save(table, key)
    return [table[k].float() for k in keys]


def train_top(
    states, labels, layers=2, epochs=3, lr=5e-5, head_lr=1e-3, bs=32, sample_w=None, seed=0
):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = AutoModel.from_pretrained(src.path)
    for p in model.parameters():
        p.requires_grad_(False)
    top = list(model.encoder.layer)[-layers:]
    for l in top:
        for p in l.parameters():
            p.requires_grad_(True)
        l.train()
    head = torch.nn.Linear(384, 1)
    y = torch.tensor(labels, dtype=torch.float32)
    pos = float(y.sum())
    wts = torch.where(y > 0, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    if sample_w is not None:
        wts = wts * torch.tensor(sample_w)
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(
        [
            {"params": [p for l in top for p in l.parameters()], "lr": lr},
            {"params": head.parameters(), "lr": head_lr},
        ],
        weight_decay=0.01,
    )
    lengths = [s.shape[0] for s in states]
    total = math.ceil(len(states) / bs) * epochs
    sch = get_linear_schedule_with_warmup(opt, int(total * 0.06), total)
    step = 0
    t0 = time.time()
    while step < total:
        for batch in _batches(lengths, bs, rng):
            h, m = _pad([states[i] for i in batch])
            logit = head(_run_top(model, layers, h, m)).squeeze(-1)
            idx = torch.tensor(batch)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logit, y[idx], weight=wts[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sch.step()
            step += 1
            if step % 20 == 0:
                print(
                    f"  step {step}/{total} loss {loss.item():.3f} {time.time() - t0:.0f}s",
                    flush=True,
                )
            if step >= total:
                break
    model.eval()
    return model, head


def score_top(model, head, states, layers=2):
    out = [None] * len(states)
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    with torch.no_grad():
        for s in range(0, len(order), 64):
            b = order[s : s + 64]
            h, m = _pad([states[i] for i in b])
            for i, v in zip(b, head(_run_top(model, layers, h, m)).squeeze(-1)):
                out[i] = float(v)
    return torch.tensor(out)


for spec in which:
    if not spec.startswith(("pair", "answer")):
        continue
    # e.g. pair:e3  answer:e3  pair:e3:wc2 (compliant rows weight x2)
    parts = spec.split(":")
    mode = parts[0]
    opts = dict(p[0:1] and (p[0], p[1:]) for p in parts[1:])
    epochs = float(opts.get("e", 3))
    layers = int(opts.get("l", 2))
    lr = float(opts.get("r", 5e-5))
    t0 = time.time()
    st_tr, st_val = states_for(train, mode, layers), states_for(val, mode, layers)
    print(spec, "states", f"{time.time() - t0:.0f}s", flush=True)
    model, head = train_top(st_tr, y_mis(train), layers=layers, epochs=int(epochs), lr=lr)
    print(spec, "trained", f"{time.time() - t0:.0f}s", flush=True)
    ce = score_top(model, head, st_val, layers)
    torch.save({"val": ce}, OUT / f"logits_{spec.replace(':', '_')}.pt")
    torch.save(
        {
            "model_top": {
                k: v
                for k, v in model.state_dict().items()
                if k.startswith(tuple(f"encoder.layer.{i}." for i in range(6 - layers, 6)))
            },
            "head": head.state_dict(),
        },
        OUT / f"model_{spec.replace(':', '_')}.pt",
    )
    report(f"{spec}-alone", [float(x) for x in 1 - torch.sigmoid(ce)], {"secs": time.time() - t0})
    s, w, b = combo_scores(base_feat, (ce,))
    report(f"gate+{spec}", s, {"w": w.tolist(), "b": float(b)})


# ---- fine-tuned request model (question alone) ----
def states_text(texts, layers, max_length=64):
    key = OUT / f"states_text_{layers}_{max_length}.pt"
    table = torch.load(key) if key.exists() else {}
    missing = sorted({t for t in texts if EmbeddingCache.key(t) not in table})
    if missing:
        model = AutoModel.from_pretrained(src.path).eval()
        level = 6 - layers
        order = sorted(missing, key=len)
        with torch.inference_mode():
            for s in range(0, len(order), 128):
                b = order[s : s + 128]
                enc_ = tok(
                    b, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
                hid = model(**enc_, output_hidden_states=True).hidden_states[level]
                for j, t in enumerate(b):
                    table[EmbeddingCache.key(t)] = (
                        hid[j, : int(enc_["attention_mask"][j].sum())].clone().half()
                    )
        torch.save(table, key)
    return [table[EmbeddingCache.key(t)].float() for t in texts]


def request_pairs(tr, exclude=frozenset()):
    pairs = [(r["request"], 1 - int(r["label"])) for r in requests if r["request"] not in exclude]
    pairs += [
        (r.question, int(r.metadata["kind"] in (COMPLIANT, SAFE)))
        for r in tr
        if r.question and r.metadata.get("writer") != "swapped"
    ]
    return pairs


def train_request_ft(tr, layers=2, epochs=3, lr=1e-4, exclude=frozenset()):
    pairs = request_pairs(tr, exclude)
    st = states_text([t for t, _ in pairs], layers)
    return train_top(st, [y for _, y in pairs], layers=layers, epochs=epochs, lr=lr, bs=32)


def score_request_ft(mh, questions, layers=2):
    model, head = mh
    qs = [q if q else " " for q in questions]
    return score_top(model, head, states_text(qs, layers), layers)


for spec in which:
    if not spec.startswith("req"):
        continue
    opts = {p[0]: p[1:] for p in spec.split(":")[1:]}
    layers = int(opts.get("l", 2))
    epochs = int(opts.get("e", 3))
    lr = float(opts.get("r", 1e-4))
    t0 = time.time()
    mh = train_request_ft(train, layers, epochs, lr)
    rq = score_request_ft(mh, [r.question for r in val], layers)
    print(spec, f"{time.time() - t0:.0f}s", flush=True)
    torch.save({"val": rq}, OUT / f"logits_{spec.replace(':', '_')}.pt")
    torch.save(
        {
            "model_top": {
                k: v
                for k, v in mh[0].state_dict().items()
                if k.startswith(tuple(f"encoder.layer.{i}." for i in range(6 - layers, 6)))
            },
            "head": mh[1].state_dict(),
        },
        OUT / f"model_{spec.replace(':', '_')}.pt",
    )
    hl = head_logits(heads, val)
    swapped = hl.clone()
    swapped[:, 0] = rq
    s, w, b = combo_scores(combine_features(swapped))
    report(f"gate[request={spec}]", s, {"w": w.tolist(), "b": float(b)})
    s, w, b = combo_scores(base_feat, (rq,))
    report(f"gate+{spec}", s, {"w": w.tolist(), "b": float(b)})
