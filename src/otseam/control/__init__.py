"""The control plane: the REST API, the web console, users and roles, served by every node.

See README.md in this folder.
"""
