"""Use cases that tie the domain (no I/O) to the database and GitHub: what a handler calls."""
