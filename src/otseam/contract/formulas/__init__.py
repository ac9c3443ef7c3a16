"""The contract's formula language: what the edge computes is part of the interface both sides sign.

Parsing (expr), type and unit checking (check, units), compiling a contract's ``computed:`` section into
a program of checked formulas (program) and the lineage of each computed point (lineage). Evaluating
them on live data is the runtime's part (otseam.compute).
"""
