"""Sweeps: many variants of one job spec, trained as ordinary jobs and ranked.

- ``request``: what ``POST /v1/sweeps`` accepts (parameters, method, metric, ASHA).
- ``expand``: the trials of a request (grid or random draws) and their job specs.
- ``asha``: the early-termination rule that stops trials falling behind at a rung.
- ``ranking``: a trial's value (its best epoch of the metric) and the order of trials.
"""
