"""Sparkplug B payloads, shared by the edge node sink and the host application source."""
