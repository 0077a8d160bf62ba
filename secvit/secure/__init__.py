"""Secure execution: fx tracing, lowering to CrypTensors, the secure plan."""
