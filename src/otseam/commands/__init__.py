"""The `seam` subcommands, one module per capability, each with a ``register(app)`` function.

The top layer: a command parses its flags, builds a plan or a contract, and calls the runtime or a
capability's package. Nothing below imports from here.
"""
