"""Configuration: defaults that need nothing, and errors that name the variable and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from github_app.config import ConfigError, load_settings


def test_no_configuration_at_all_gives_a_working_sqlite_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    s = load_settings({"XDG_DATA_HOME": str(tmp_path)})
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert (s.host, s.port, s.github_api_url) == ("127.0.0.1", 3000, "https://api.github.com")
    assert s.missing_github_settings() == [
        "GITHUB_APP_ID",
        "GITHUB_PRIVATE_KEY (or GITHUB_PRIVATE_KEY_PATH)",
        "GITHUB_WEBHOOK_SECRET",
    ]


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "GITHUB_APP_ID": "abc",
                "PORT": "70000",
                "LOG_FORMAT": "xml",
                "GITHUB_API_URL": "ftp://example",
                "DATABASE_URL": "mysql://x/y",
            }
        )
    text = str(err.value)
    assert "GITHUB_APP_ID: must be a positive integer, got 'abc'" in text
    assert "PORT: must be a port number from 1 to 65535, got '70000'" in text
    assert "LOG_FORMAT: must be one of text, json, got 'xml'" in text
    assert "GITHUB_API_URL: must be an http(s) URL" in text
    assert "DATABASE_URL: must be a postgresql:// or sqlite:// URL" in text


def test_webhook_secret_list_allows_rotation() -> None:
    s = load_settings({"GITHUB_WEBHOOK_SECRET": "new-secret-aaaa, old-secret-bbbb"})
    assert s.webhook_secrets == ("new-secret-aaaa", "old-secret-bbbb")
    assert "new-secret" not in repr(s)  # secrets stay out of reprs and logs


def test_private_key_from_a_file_or_inline_with_escaped_newlines(tmp_path: Path) -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    key_file.chmod(0o600)
    assert load_settings({"GITHUB_PRIVATE_KEY_PATH": str(key_file)}).github_private_key == pem
    inline = pem.replace("\n", "\\n")
    assert load_settings({"GITHUB_PRIVATE_KEY": inline}).github_private_key == pem


def test_bad_private_key_is_reported_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"GITHUB_PRIVATE_KEY": "super-secret-not-a-pem"})
    assert "GITHUB_PRIVATE_KEY: is not a PEM private key" in str(err.value)
    assert "super-secret" not in str(err.value)
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH: cannot read"):
        load_settings({"GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=4100\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("PORT", "4200")
    s = load_settings(env_file=env_file)
    assert (s.port, s.log_level) == (4200, "DEBUG")


def test_readme_documents_every_variable_with_its_default() -> None:
    from github_app.config import SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.name}` | {setting.default} |" in readme, setting.name


def test_the_app_schema_is_a_plain_name_never_the_seeds() -> None:
    assert load_settings({}).database_app_schema == "bmad_app"
    assert load_settings({"DATABASE_APP_SCHEMA": "github_app"}).database_app_schema == "github_app"
    for bad in ("public", "Bmad", "bmad-app", "pg_app", "a;drop"):
        with pytest.raises(ConfigError, match="DATABASE_APP_SCHEMA"):
            load_settings({"DATABASE_APP_SCHEMA": bad})
