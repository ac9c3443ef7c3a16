"""Source plugins: inputs that are not PLC polling, one folder each (see core/plugins.py)."""
