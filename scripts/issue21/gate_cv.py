"""Family-out cross-validation on train+validation (test never read): 4 folds, each holding out
two SmolLM2 style families and a quarter (by question hash) of the other rows. Heads train on
the other folds; scores pooled out of fold; the combination is fitted on pooled OOF logits with
its own 4-fold CV; threshold: flags <= 2% of pooled aligned rows. Proxy for unseen styles."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.argv = [sys.argv[0], sys.argv[1], "none"] + sys.argv[2:]
exec(
    open("" + str(Path(__file__).with_name("gate_experiments.py")) + "")
    .read()
    .split("heads = frozen_heads(train)")[0]
)  # helpers only
src_text = open("" + str(Path(__file__).with_name("gate_experiments.py")) + "").read()
helpers = src_text[src_text.index("src = resolve_model") : src_text.index("for spec in which:")]
exec(helpers)
rq_text = src_text[src_text.index("# ---- fine-tuned request model") :]
exec(rq_text[: rq_text.index("for spec in which:")])
cands = sys.argv[3:]
allrows = train + val
FOLDS = [
    ("plain", "numbered"),
    ("one-liner", "persona"),
    ("sampled", "step-by-step"),
    ("sure-heres", "to-you-need"),
]


def fold_of(r):
    f = r.metadata["family"]
    for i, fams in enumerate(FOLDS):
        if f in fams:
            return i
    return int(hashlib.sha256(r.question.encode()).hexdigest()[:8], 16) % 4


fold = [fold_of(r) for r in allrows]
y = [int(r.metadata["kind"] == COMPLIANT) for r in allrows]
cvres = json.loads((OUT / "cv.json").read_text()) if (OUT / "cv.json").exists() else {}
oof_store = OUT / "cv_oof.pt"
oof = torch.load(oof_store) if oof_store.exists() else {}


def cv_combo(feat):
    out = torch.zeros(len(allrows))
    yy = torch.tensor(y)
    for k in range(4):
        tr = [i for i in range(len(allrows)) if fold[i] != k]
        te = [i for i in range(len(allrows)) if fold[i] == k]
        w, b = fit_logistic(feat[tr], [y[i] for i in tr], weight_decay=1e-4, balanced=False)
        out[te] = 1 - torch.sigmoid(feat[te] @ w + b)
    return [float(x) for x in out]


def rep(name, scores):
    aligned = [s for s, yy in zip(scores, y) if not yy]
    th = _threshold_for_rate(aligned, 0.02)
    m = gate_metrics(scores, allrows, th)
    fam = by_family(scores, allrows, th)
    cvres[name] = {
        "threshold": th,
        "overall": m,
        "family": {
            f: {k: v[k] for k in ("n", "auroc", "recall_harmful", "aligned_flag_rate")}
            for f, v in fam.items()
        },
    }
    (OUT / "cv.json").write_text(json.dumps(cvres, indent=1))
    print(
        f"== CV {name}: AUROC {m['auroc']} F1 {m['f1_harmful']} P {m['precision_harmful']} R {m['recall_harmful']} aff {m['aligned_flag_rate']}"
    )
    for f, v in fam.items():
        if v["auroc"] is not None or f == "swapped":
            print(
                f"   {f:16s} n={v['n']:3d} auroc={v['auroc']} recall={v['recall_harmful']} aff={v['aligned_flag_rate']}"
            )


# frozen heads OOF
if "frozen" not in oof:
    logits = torch.zeros(len(allrows), 3)
    for k in range(4):
        tr = [allrows[i] for i in range(len(allrows)) if fold[i] != k]
        te = [i for i in range(len(allrows)) if fold[i] == k]
        h = frozen_heads(tr, exclude={allrows[i].question for i in te})
        logits[te] = head_logits(h, [allrows[i] for i in te])
    oof["frozen"] = logits
    torch.save(oof, oof_store)
base = combine_features(oof["frozen"])
rep("frozen-gate", cv_combo(base))
rep("frozen-content-alone", [float(x) for x in 1 - torch.sigmoid(oof["frozen"][:, 2])])

for spec in cands:
    if spec == "chunk" or spec.startswith("req"):
        continue
    parts = spec.split(":")
    mode = parts[0]
    opts = {p[0]: p[1:] for p in parts[1:]}
    epochs = int(opts.get("e", 3))
    layers = int(opts.get("l", 2))
    lr = float(opts.get("r", 5e-5))
    if spec not in oof:
        st = states_for(allrows, mode, layers)
        ce = torch.zeros(len(allrows))
        t0 = time.time()
        for k in range(4):
            tr = [i for i in range(len(allrows)) if fold[i] != k]
            te = [i for i in range(len(allrows)) if fold[i] == k]
            model, head = train_top(
                [st[i] for i in tr], [y[i] for i in tr], layers=layers, epochs=epochs, lr=lr
            )
            ce[te] = score_top(model, head, [st[i] for i in te], layers)
            print(spec, "fold", k, f"{time.time() - t0:.0f}s", flush=True)
        oof[spec] = ce
        torch.save(oof, oof_store)
    ce = oof[spec]
    rep(f"{spec}-alone", [float(x) for x in 1 - torch.sigmoid(ce)])
    rep(f"gate+{spec}", cv_combo(torch.cat([base, ce.unsqueeze(-1)], -1)))

import re


def chunks(text, size=240):
    sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    out, cur = [], ""
    for s in sents:
        if cur and len(cur) + len(s) > size:
            out.append(cur)
            cur = s
        else:
            cur = (cur + " " + s).strip()
    if cur:
        out.append(cur)
    return out or [text]


def chunk_max(heads_fn, part_idx, h):
    texts = [chunks(allrows[i].answer) for i in part_idx]
    flat = [c for t in texts for c in t]
    e = embed(flat, False)
    with torch.inference_mode():
        lc = h["content"](e).squeeze(-1)
        lp = h["complies"](e).squeeze(-1)
    out_c, out_p, j = [], [], 0
    for t in texts:
        out_c.append(float(lc[j : j + len(t)].max()))
        out_p.append(float(lp[j : j + len(t)].max()))
        j += len(t)
    return out_c, out_p


if "chunk" in cands:
    if "chunk" not in oof:
        feats = torch.zeros(len(allrows), 2)
        for k in range(4):
            tr = [allrows[i] for i in range(len(allrows)) if fold[i] != k]
            te = [i for i in range(len(allrows)) if fold[i] == k]
            h = frozen_heads(tr, exclude={allrows[i].question for i in te})
            c, p = chunk_max(None, te, h)
            feats[te] = torch.tensor([c, p]).T
        oof["chunk"] = feats
        torch.save(oof, oof_store)
    f = oof["chunk"]
    rep("chunkmax-content-alone", [float(x) for x in 1 - torch.sigmoid(f[:, 0])])
    rep("gate+chunkmax", cv_combo(torch.cat([base, f], -1)))

for spec in cands:
    if not spec.startswith("req"):
        continue
    opts = {p[0]: p[1:] for p in spec.split(":")[1:]}
    layers = int(opts.get("l", 2))
    epochs = int(opts.get("e", 3))
    lr = float(opts.get("r", 1e-4))
    if spec not in oof:
        rq = torch.zeros(len(allrows))
        t0 = time.time()
        for k in range(4):
            tr = [allrows[i] for i in range(len(allrows)) if fold[i] != k]
            te = [i for i in range(len(allrows)) if fold[i] == k]
            mh = train_request_ft(tr, layers, epochs, lr, exclude={allrows[i].question for i in te})
            rq[te] = score_request_ft(mh, [allrows[i].question for i in te], layers)
            print(spec, "fold", k, f"{time.time() - t0:.0f}s", flush=True)
        oof[spec] = rq
        torch.save(oof, oof_store)
    rq = oof[spec]
    sw = oof["frozen"].clone()
    sw[:, 0] = rq
    rep(f"gate[request={spec}]", cv_combo(combine_features(sw)))
    rep(f"gate+{spec}", cv_combo(torch.cat([base, rq.unsqueeze(-1)], -1)))
