"""What every tool is built from: the @tool registry, the context a tool gets, its JSON schema, the
error base."""
