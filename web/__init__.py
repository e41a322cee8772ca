"""HTTP edges: the device ingress (aiohttp) and the dashboard views (Faust web)."""
