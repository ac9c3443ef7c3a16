"""Sparkplug B sink."""
