#!/usr/bin/env python3
"""Process-critic AUROC by depth from `ponder generate --dump-trees` output (trees.jsonl).

A node is labelled good when a correct finished solution lies below it; its scores are the
process critic on its own step and the weakest step on its path. Usage:
    python3 scripts/tree_auroc.py OUT/trees.jsonl
"""
import json, sys, collections
def auroc(scores, labels):
    pos=[s for s,l in zip(scores,labels) if l]; neg=[s for s,l in zip(scores,labels) if not l]
    if not pos or not neg: return None
    w=0.0
    for p in pos:
        for n in neg:
            w += 1.0 if p>n else (0.5 if p==n else 0.0)
    return w/(len(pos)*len(neg))
T=[json.loads(l) for l in open(sys.argv[1])]
by_depth=collections.defaultdict(lambda: ([],[],[]))
term_s=[];term_l=[]
for t in T:
    nodes={n['id']:n for n in t['nodes']}
    kids=collections.defaultdict(list)
    for n in t['nodes']:
        if n['parent'] is not None and n['id']!=0: kids[n['parent']].append(n['id'])
    memo={}
    def good(i):
        if i in memo: return memo[i]
        n=nodes[i]
        r = bool(n['terminal'] and n['correct']) or any(good(k) for k in kids[i])
        memo[i]=r; return r
    def minprm(i):
        m=1.0
        while i and i!=0:
            p=nodes[i]['critics']['prm']
            if p is not None: m=min(m,p)
            i=nodes[i]['parent']
        return m
    for n in t['nodes']:
        if n['id']==0: continue
        d=min(n['depth'],4)
        prm=n['critics']['prm']
        if prm is None: continue
        by_depth[d][0].append(prm); by_depth[d][1].append(minprm(n['id'])); by_depth[d][2].append(good(n['id']))
        if n['terminal'] and n['correct'] is not None:
            term_s.append(minprm(n['id'])); term_l.append(n['correct'])
print(f"{len(T)} trees")
print("depth | nodes | with a correct answer below | AUROC step score | AUROC weakest step on path")
for d in sorted(by_depth):
    s,m,l=by_depth[d]
    a1=auroc(s,l); a2=auroc(m,l)
    print(f"{d}{'+' if d==4 else ''} | {len(l)} | {sum(l)/len(l):.2f} | {a1 if a1 is None else round(a1,2)} | {a2 if a2 is None else round(a2,2)}")
a=auroc(term_s,term_l)
print(f"finished solutions: {len(term_l)}, correct {sum(term_l)}, AUROC of weakest step {a and round(a,2)}")
