"""MCP tool servers as tools: the MCP_SERVERS file and one supervised connection per server."""
