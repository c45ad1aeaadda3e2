"""The status CLI reads `api.host`/`api.port` without PyYAML when the file is plain enough: whatever
it answers must be what PyYAML answers, and anything it is not sure of must go to PyYAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from manager.status_cli import api_address, quick_api_fields

ROOT = Path(__file__).resolve().parents[2]

PLAIN = [
    "api:\n  host: 127.0.0.1\n  port: 4200\n",
    "database:\n  url: x\napi:\n    host: localhost   # a comment\n    port: 8080\nworkers: {}\n",
    "# top\napi:  # the API\n\n  port: ${MANAGER_PORT:-4200}\n  host: my-host.example\n",
    "api:\n  port: 0\n",
    "workers:\n  a:\n    module: x\n",  # no api: the defaults
    "api:\n  host: 0.0.0.0\n  port: 1\n",
    "api:\n  host: Nope\n",
]

NOT_SURE = [
    "api: {host: a, port: 1}\n",
    "api:\n  host: 'a'\n",
    'api:\n  host: "a"\n',
    "api:\n  host: yes\n",
    "api:\n  host: null\n",
    "api:\n  host: .inf\n",
    "api:\n  host: 0x1f\n",
    "api:\n  port: 0755\n",  # octal to YAML 1.1
    "api:\n  port: 4_200\n",
    "api:\n  host: 12:30\n",  # sexagesimal
    "api:\n  host: 2001-12-14\n",
    "api:\n  host: &h a\n",
    "api:\n  host: *h\n",
    "api:\n  host: !!str 1\n",
    "api:\n  host:\n    a\n",
    "api:\n  host: a\n   port: 1\n",
    "api:\n  host: a: b\n",
    "api:\n  host: a\n  host: b\n",
    "api:\n  host: a\napi:\n  host: b\n",
    "---\napi:\n  host: a\n",
    "%YAML 1.1\n---\napi:\n  host: a\n",
    "x: [1,\n2]\napi:\n  host: a\n",
    "api:\n\thost: a\n",
    "api:\n  - host: a\n",
    "<<: *base\napi:\n  host: a\n",
    "api:\n  host: |\n    a\n",
]


@pytest.mark.parametrize("text", PLAIN)
def test_a_plain_api_section_reads_as_pyyaml_reads_it(text: str) -> None:
    fields = quick_api_fields(text)
    assert fields is not None
    expected = (yaml.safe_load(text) or {}).get("api") or {}
    assert fields == {k: v for k, v in expected.items() if k in ("host", "port")}


@pytest.mark.parametrize("text", NOT_SURE)
def test_anything_unusual_is_left_to_pyyaml(text: str) -> None:
    assert quick_api_fields(text) is None


def test_the_shipped_config_takes_the_quick_path() -> None:
    text = (ROOT / "config.yaml").read_text()
    assert quick_api_fields(text) == yaml.safe_load(text)["api"]


def test_api_address_expands_variables_and_falls_back_to_pyyaml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("T_PORT", "4300")
    quick = tmp_path / "quick.yaml"
    quick.write_text("api:\n  host: 0.0.0.0\n  port: ${T_PORT:-1}\n")
    assert api_address(str(quick)) == ("127.0.0.1", 4300)
    flow = tmp_path / "flow.yaml"
    flow.write_text("api: {host: '::1', port: 4301}\n")
    assert api_address(str(flow)) == ("::1", 4301)
