"""Bot commands, one module per family; importing this package registers them all."""

from github_app.commands import about, money, ratings, resync, stories
from github_app.commands.registry import COMMANDS

__all__ = ["COMMANDS", "about", "money", "ratings", "resync", "stories"]
