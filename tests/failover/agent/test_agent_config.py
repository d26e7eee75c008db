"""The agent's config file: read, checked, and every problem one line that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.agent.config import dump_agent_config, load_agent_config
from failover.exceptions import ConfigError
from tests.failover.agent.served import agent_config


def test_a_config_written_by_the_lab_reads_back_the_same(tmp_path: Path) -> None:
    config = agent_config(tmp_path / "home", 7070)
    path = tmp_path / "agent.yaml"
    path.write_text(dump_agent_config(config))
    assert load_agent_config(path) == config


@pytest.mark.parametrize(("text", "said"), [
    ("site: Bad Site\n", "site: a site's name is lower-case letters"),
    ("site: aws\n", "listen: is required (and 3 more)"),
    ("- a list\n", "(top level): "),
    ("site: [unclosed\n", "cannot read agent config"),
])
def test_a_bad_config_is_one_line_naming_what_is_wrong(tmp_path: Path, text: str,
                                                       said: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_agent_config(path)
    assert said in str(raised.value) and "\n" not in str(raised.value)
    assert raised.value.exit_code == 2


def test_a_missing_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_agent_config(tmp_path / "nowhere.yaml")
