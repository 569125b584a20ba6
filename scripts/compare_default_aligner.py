"""CPU comparison on 20 held-out triples: shipped adapter vs zero-shot SmolLM2 (chat), 128 new tokens.

Run after `scripts/train_defaults.sh aligner` (reads /work/notes/data/aligner_heldout.jsonl; edit the path).
"""
import json, random, time
from aligners import Aligner
from aligners.data import read_triples
from aligners.training.evaluate import evaluate_aligner
held = [t for t in read_triples('/work/notes/data/aligner_heldout.jsonl').records if not t.unchanged]
rng = random.Random(0)
sub = rng.sample([t for t in held if t.criterion == 'helpful'], 10) + rng.sample([t for t in held if t.criterion == 'ethical'], 10)
res = {}
for name, make in [('trained', lambda: Aligner.from_pretrained('shared/aligners/default_models/aligner', max_new_tokens=128, batch_size=10)),
                   ('zero_shot', lambda: Aligner('smollm2', format='chat', max_new_tokens=128, batch_size=10))]:
    t = time.time()
    # criterion per triple matters for the chat prompt: evaluate each criterion group separately
    parts = {}
    for crit in ['helpful', 'ethical']:
        a = make(); a.criterion = __import__('aligners').get_criterion(crit)
        parts[crit] = evaluate_aligner(a, [x for x in sub if x.criterion == crit], batch_size=10)
    res[name] = {c: {k: v for k, v in r.items() if k != 'examples'} | {'outputs': [e['output'] for e in r['examples']]} for c, r in parts.items()}
    res[name]['seconds'] = round(time.time() - t, 1)
    print(name, json.dumps({c: {k: v for k, v in r.items() if k != 'outputs'} for c, r in res[name].items() if c != 'seconds'}), res[name]['seconds'], flush=True)
json.dump(res, open('/work/notes/cpu_compare.json', 'w'), indent=1)
