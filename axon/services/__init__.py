"""Axon's services, one module a responsibility: press, selection, runs, publish, window, gate, approvals,
alerts (triage) and versions. Reads live in axon/selectors.py; doors import the module that holds what they call."""
