"""The MCP server: the thin tool layer, its transports and their security."""
