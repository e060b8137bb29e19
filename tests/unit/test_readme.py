from pathlib import Path

from config import AllSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_documents_every_setting():
    missing = [
        name for name in AllSettings.model_fields if f"`HOSTSTREAM_{name.upper()}`" not in README
    ]
    assert missing == []


def test_the_readme_gives_the_two_setup_commands():
    assert "make run" in README
    assert "make test" in README


def test_the_readme_configuration_table_is_what_config_prints():
    from typer.testing import CliRunner

    from app.cli import cli

    printed = CliRunner().invoke(cli, ["config", "--markdown"]).output.strip()
    assert printed in README
