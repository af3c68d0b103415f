"""The insurer's core beside the gateway: its message protocol (``protocol``), a client (``client``) and a
simulator of it (``simulator``). DESIGN Part 2, "Beside the insurer's core"."""
