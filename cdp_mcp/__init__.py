"""cdp-mcp: build a Treasure Data CDP end to end, driven over MCP or the command line."""

__version__ = "0.1.0"
