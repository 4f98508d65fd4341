"""The model client: one traced call, streamed or not, on an aiohttp transport, read the way every
OpenAI-compatible server sends it."""
