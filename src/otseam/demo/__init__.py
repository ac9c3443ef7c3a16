"""`seam demo`: the simulated plant, its OT node and its IT node on this machine, with nothing to configure."""
