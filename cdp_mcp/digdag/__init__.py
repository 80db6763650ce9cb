"""Digdag project files: loading .dig YAML with `!include`, as Digdag's compiler reads it."""
