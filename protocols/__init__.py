"""MPC kernels: secure CrypTen kernels with plaintext references (never imports secvit)."""
