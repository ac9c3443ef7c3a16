"""Local SQLite historian sink."""
