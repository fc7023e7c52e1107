"""Detections from the threat model: manifest drift and phantom agents, the self-hash of the
installed tool, and the plugin hash registry."""
