"""bmad-marketplace-app: the GitHub App between client repositories and the BMAD marketplace."""

__version__ = "0.1.0"
