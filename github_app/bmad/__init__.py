"""Parsers for the files a BMAD repository keeps: story files, QA gate files, BMAD's core config and the
app's own repository configuration. No I/O: callers fetch the bytes, these modules read them."""
