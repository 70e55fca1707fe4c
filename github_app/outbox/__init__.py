"""The GitHub outbox: what the app shows on GitHub (check runs, the PR comment), recorded as desired
state in the handlers' transactions and brought to GitHub by a paced sender."""

from github_app.outbox.enqueue import KIND_CHECK_RUN, KIND_PR_COMMENT, KINDS, canonical_json, set_desired

__all__ = ["KINDS", "KIND_CHECK_RUN", "KIND_PR_COMMENT", "canonical_json", "set_desired"]
