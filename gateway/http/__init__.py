"""The HTTP door: the aiohttp application, its routes and handlers, and the server that runs it."""
