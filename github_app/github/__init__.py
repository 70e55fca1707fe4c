"""Everything that talks to the GitHub API: app authentication, the client, delivery recovery."""

from github_app.github.auth import (
    AppJWTSource,
    InstallationToken,
    InstallationTokenCache,
    make_app_jwt,
)
from github_app.github.client import DEFAULT_API_URL, GitHubApp, GitHubClient, RetryPolicy
from github_app.github.redeliver import RecoverReport, recover_missed_deliveries

__all__ = [
    "DEFAULT_API_URL",
    "AppJWTSource",
    "GitHubApp",
    "GitHubClient",
    "InstallationToken",
    "InstallationTokenCache",
    "RecoverReport",
    "RetryPolicy",
    "make_app_jwt",
    "recover_missed_deliveries",
]
