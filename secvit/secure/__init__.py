"""Secure execution: the secure plan (the traced model run node by node on secrets) and its
fixed-point emulation."""
