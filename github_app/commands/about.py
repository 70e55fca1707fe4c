"""`/bmad help`: the commands this person may run here."""

from __future__ import annotations

from github_app.commands.registry import COMMANDS, Call, Reply, register
from github_app.domain.command_rights import ANYONE


@register("help", usage="/bmad help", summary="the commands you may run here, with examples", rule=ANYONE, doing="")
async def help_command(call: Call) -> Reply:
    return Reply.applied(help_text(call))


def help_text(call: Call) -> str:
    mine = [c for c in COMMANDS.values() if c.rule.refusal(call.speaker, None, c.doing) is None]
    lines = [f"Commands {call.speaker.mention} may run here:", "", "| command | does |", "|---|---|"]
    lines += [f"| `{c.example}` | {c.summary} |" for c in sorted(mine, key=lambda c: c.name)]
    others = sorted(c.name for c in COMMANDS.values() if c not in mine)
    if others:
        lines += ["", "Not open to you here: " + ", ".join(f"`{name}`" for name in others) + "."]
    if call.speaker.user_id is None:
        lines += ["", call.command.rule.refusal(call.speaker) or _unknown(call)]
    return "\n".join(lines)


def _unknown(call: Call) -> str:
    if call.speaker.problem:
        return call.speaker.problem
    return (
        f"{call.speaker.mention} is not a marketplace user: set your GitHub username in your marketplace "
        "profile to run more of them"
    )
