"""`seam demo`: the simulated plant and the whole edge running on it, on embedded defaults."""
