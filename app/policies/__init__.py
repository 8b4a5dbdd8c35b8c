"""Policies (SPEC §3): the field catalogue, the pure engine, and their HTTP surface."""
