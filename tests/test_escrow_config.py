"""The chain settings: validated at start, every problem named, keys never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from github_app.config import ConfigError, load_settings
from github_app.escrow.backends import Chains

KEY = "0x" + "ab" * 32
USDC = "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"


def test_polygon_settings_are_validated_and_keys_never_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "POLYGON_ARBITER_KEY": "0xnot-a-key-secret-value",
                "POLYGON_ESCROW_CONTRACT": USDC.lower(),
                "POLYGON_TOKENS": "USDC",
                "POLYGON_CONFIRMATIONS": "0",
                "SOLANA_TREASURY": "0OIl",
                "SOLANA_COMMITMENT": "processed",
            }
        )
    text = str(err.value)
    for name in (
        "POLYGON_ARBITER_KEY",
        "POLYGON_ESCROW_CONTRACT",
        "POLYGON_TOKENS",
        "POLYGON_CONFIRMATIONS",
        "SOLANA_TREASURY",
        "SOLANA_COMMITMENT",
    ):
        assert name in text
    assert "not-a-key-secret-value" not in text


def test_a_configured_polygon_and_its_key_in_the_scrubber(tmp_path: Path) -> None:
    key_file = tmp_path / "arbiter.key"
    key_file.write_text(KEY.upper().replace("0X", "0x") + "\n")
    settings = load_settings(
        {
            "POLYGON_RPC_URL": "http://127.0.0.1:8545",
            "POLYGON_ESCROW_CONTRACT": USDC,
            "POLYGON_ARBITER_KEY_PATH": str(key_file),
            "POLYGON_TOKENS": f"usdc={USDC}",
        }
    )
    assert settings.polygon_tokens == (("USDC", USDC),)
    assert settings.polygon_arbiter_key == KEY
    assert KEY in settings.secret_values() and KEY[2:] in settings.secret_values()
    assert KEY not in repr(settings)
    chains = Chains.from_settings(settings)
    assert chains.problem("polygon") is None
    assert chains.problem("solana") is not None and chains.problem("solana").startswith("Solana is not configured")


def test_an_unconfigured_chain_says_so() -> None:
    chains = Chains.from_settings(load_settings({}))
    assert (chains.problem("polygon") or "").startswith("Polygon is not configured")
