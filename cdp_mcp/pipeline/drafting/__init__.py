"""From a client's data to a pipeline config: inspect a source, draft its config.

`folder` and `td` read a source (a folder of extracts, a TD database) into a bounded sample,
`profile` says what the sample holds (keys, times, identifiers, personal data), `render`
writes the commented YAML and `draft` puts them together without overwriting anything.
The MCP tools inspect_source and draft_config and the CLI's `inspect` / `draft` call them.
This module imports nothing heavy: the server lists the tools from `models` alone.
"""
