"""The HTTP surface: routes, problem details, auth, CORS, headers, monitor, SSE, OpenAPI."""
