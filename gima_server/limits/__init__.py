"""Rate limits: a pure GCRA, a memory and a Redis backend, route-class policy and the middleware."""
