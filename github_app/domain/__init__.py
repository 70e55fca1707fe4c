"""The marketplace's rules, with no I/O: which story a PR delivers, and how stories and deliverables move
through their lifecycles."""
