"""The ground floor: config, schemas, phases, SQL text, source files, the unification plan
and TD's unify.yml limits, secrets handling, workspaces. It imports nothing above it.
"""
