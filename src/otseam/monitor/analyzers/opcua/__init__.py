"""OPC UA binary: the stream parser (message headers, the service of unencrypted chunks)."""
