"""Party roles: rank 0 owns the model, rank 1 owns the images, rank W is the dealer."""

from __future__ import annotations

__all__ = ["CLIENT", "OWNER", "role_name"]

OWNER, CLIENT = 0, 1


def role_name(rank: int, world_size: int) -> str:
    """Human name of a rank, e.g. ``party 1 (client)``."""
    if rank == OWNER:
        role = "owner"
    elif rank == CLIENT:
        role = "client"
    elif rank == world_size:
        role = "dealer"
    else:
        role = "helper"
    return f"party {rank} ({role})"
