"""The benchmark workloads: one module each, holding the same computation for every system.

A workload module defines:
    NAME, DESCRIPTION, TRAINING (bool), REPEATS (default timed steps), LR
    make(rng) -> (params, data)      numpy float32 arrays in graphc's layout
    graphc(gc, backend, params, data) -> step()   builds, compiles, returns a one-step callable
    torch(torch, params, data) -> step()
    jax(jax, params, data) -> step()
Every step() runs one step synchronously (JAX: blocked until ready) and returns the loss
(training) or the output (inference); run.py turns the first results into a few floats to
check that the systems agree.
"""

from . import cnn, ew, gru, lstm, lstm_scan, mlp

WORKLOADS = {m.NAME: m for m in (ew, mlp, cnn, lstm, lstm_scan, gru)}
