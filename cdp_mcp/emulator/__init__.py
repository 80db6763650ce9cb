"""A Treasure Data-compatible server on loopback, backed by the local runner (`cdp-mcp emulate`).

It serves the Digdag REST and API v3 endpoints `TreasureDataBackend` calls, with TD's JSON
shapes and status codes, so the TD backend is tested over real HTTP without an account;
a fault mode makes it fail like a busy TD. Entry points: `app.create_app`,
`faults.FaultPlan`, `server.BackgroundServer` / `server.serve`.
"""
