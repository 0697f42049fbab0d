"""The detector's pure core: features, norms, lineage, approvals, training, risk, severity and the gate's judgement.

Plain Python and numpy on values handed in; no Django, no database, no app above it
(tests/test_layers.py holds it to that), so every rule here is tested and benchmarked without a server.
"""
