"""Request handlers, one module per area; ``gateway.http.routes`` lists which path each one serves."""
