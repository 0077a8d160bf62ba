"""Party roles: rank 0 owns the model, rank 1 owns the images, rank W is the dealer."""

from __future__ import annotations

__all__ = ["CLIENT", "OWNER", "role", "role_name"]

OWNER, CLIENT = 0, 1


def role(rank: int, world_size: int) -> str:
    """``owner``, ``client``, ``dealer`` (rank ``world_size``) or ``helper``."""
    if rank == OWNER:
        return "owner"
    if rank == CLIENT:
        return "client"
    return "dealer" if rank == world_size else "helper"


def role_name(rank: int, world_size: int) -> str:
    """Human name of a rank, e.g. ``party 1 (client)``."""
    return f"party {rank} ({role(rank, world_size)})"
