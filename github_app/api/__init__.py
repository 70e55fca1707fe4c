"""The JSON API under /api/v1 for the marketplace's other services: read-only views of projects,
stories and escrows, and the operator's delivery retry. Nothing here imports a chain library: the
HTTP process stays light."""
