"""`seam host`: the IT-side Sparkplug B host application (STATE, ingestion, online tracking, rebirths)."""
