"""Latency and communication profiler: per-node costs, network estimates, reports."""
