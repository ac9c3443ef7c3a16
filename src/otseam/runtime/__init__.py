"""The runtime of a node: the supervisor, the sink runner, the HTTP server, health, metrics and status.

Above the model (otseam.core: records, columns, the plugin protocols) and the journal and pipeline;
below the plugins' packages only in that it loads them by name, never by import.
"""
