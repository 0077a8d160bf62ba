"""MPC-aware attention search (MPCViT): which heads keep ReLU-softmax, which scale."""
