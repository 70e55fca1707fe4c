"""The chain settings: validated at start, every problem named, keys never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from github_app.chains.keys import load_chain_keys
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
    key_file.chmod(0o600)
    settings = load_settings(
        {
            "POLYGON_RPC_URL": "http://127.0.0.1:8545",
            "POLYGON_ESCROW_CONTRACT": USDC,
            "POLYGON_ARBITER_KEY_PATH": str(key_file),
            "POLYGON_TOKENS": f"usdc={USDC}",
        }
    )
    assert settings.polygon_tokens == (("USDC", USDC),)
    # The settings every process loads hold the path, never the key: only the signing process reads it.
    assert settings.polygon_arbiter_key is None and settings.polygon_arbiter_key_path == str(key_file)
    loaded = load_chain_keys(settings)
    assert loaded.polygon_arbiter_key == KEY
    assert KEY in loaded.secret_values() and KEY[2:] in loaded.secret_values()
    assert KEY not in repr(loaded)
    chains = Chains.from_settings(settings)
    assert chains.problem("polygon") is None
    assert chains.problem("solana") is not None and chains.problem("solana").startswith("Solana is not configured")


@pytest.mark.parametrize(
    ("variable", "content"),
    [
        ("GITHUB_PRIVATE_KEY_PATH", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"),
        ("POLYGON_ARBITER_KEY_PATH", KEY),
        ("SOLANA_AUTHORITY_KEYPAIR_PATH", json.dumps(list(range(64)))),
    ],
)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_key_file_open_to_its_group_or_to_others_is_refused_at_start(
    tmp_path: Path, variable: str, content: str, mode: int
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(content)
    key_file.chmod(mode)
    with pytest.raises(ConfigError) as err:
        load_settings({variable: str(key_file)})
    assert f"{variable}: {str(key_file)!r} is open to its group or to others (mode {mode:04o})" in str(err.value)
    assert f"chmod 600 {key_file}" in str(err.value)
    key_file.chmod(0o600)
    load_settings({variable: str(key_file)})  # the owner's alone: accepted


def test_a_bad_key_file_leaves_its_chain_unconfigured_with_the_reason_and_the_other_chain_working(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "authority.json"
    bad.write_text("[1, 2, 3]")
    bad.chmod(0o600)
    good = tmp_path / "arbiter.key"
    good.write_text(KEY)
    good.chmod(0o600)
    settings = load_settings(
        {
            "POLYGON_RPC_URL": "http://127.0.0.1:8545",
            "POLYGON_ESCROW_CONTRACT": USDC,
            "POLYGON_ARBITER_KEY_PATH": str(good),
            "SOLANA_RPC_URL": "http://127.0.0.1:8899",
            "SOLANA_AUTHORITY_KEYPAIR_PATH": str(bad),
            "SOLANA_TREASURY": "9p1eReWfapTtLHdbS3AmhbUm6TRpnasjgoKqs5NfJfVi",
        }
    )
    chains = Chains.from_settings(settings)
    assert chains.problem("polygon") is None
    assert "is not a keypair (a JSON array of 64 bytes)" in (chains.problem("solana") or "")


def test_an_unconfigured_chain_says_so() -> None:
    chains = Chains.from_settings(load_settings({}))
    assert (chains.problem("polygon") or "").startswith("Polygon is not configured")
