"""Semantic history search: finished messages embedded in the background, ranked by meaning or fused with text."""
