"""Notebook 15: a small shop of gRPC services that call each other, and the retry budget that
protects them."""
