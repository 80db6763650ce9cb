"""The pipeline's rules as pure functions over its state: no I/O, no backend, no clock.

`budget`: the attempt lifecycle and its 3-attempt budgets; `steps`: each step's
preconditions (one message each, used to refuse a call and to compute the next action);
`advice`: what to call next; `gate`: the phase-order gate. The orchestrator does the I/O
and asks these.
"""
