"""The deployment files (deploy/): the compose file parses and wires the roles as the README says, the Dockerfile
builds a non-root image of `.[redis]`, the systemd units start the commands that exist, and the extras the README
names exist in pyproject.toml. (No Docker engine here: these check the files, not a running stack.)"""

from __future__ import annotations

import ast
import configparser
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from bot.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def load_yaml(text: str) -> Any:
    """PyYAML when it is installed; else a small reader for the YAML that compose files use (block mappings and
    sequences, flow lists, quoted scalars, anchors, aliases and `<<` merges). Malformed indentation raises."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return _MiniYaml(text).document()
    return yaml.safe_load(text)


class _MiniYaml:
    def __init__(self, text: str) -> None:
        self.lines: list[tuple[int, str]] = []
        for raw in text.splitlines():
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise ValueError(f"tab in indentation: {raw!r}")
            line = _strip_comment(raw).rstrip()
            if line.strip():
                self.lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
        self.i = 0
        self.anchors: dict[str, Any] = {}

    def document(self) -> Any:
        value = self.block(0)
        if self.i != len(self.lines):
            raise ValueError(f"unexpected line: {self.lines[self.i][1]!r}")
        return value

    def block(self, indent: int) -> Any:
        if self.i >= len(self.lines):
            return None
        level, text = self.lines[self.i]
        if level != indent:
            raise ValueError(f"bad indentation at {text!r}")
        return self.sequence(indent) if text.startswith("- ") or text == "-" else self.mapping(indent)

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit: set[str] = set()  # keys written here (they override merged ones; a repeat is an error)
        while self.i < len(self.lines):
            level, text = self.lines[self.i]
            if level < indent:
                break
            if level > indent or text.startswith("- "):
                raise ValueError(f"bad indentation at {text!r}")
            match = re.fullmatch(r'("[^"]*"|[^:]+?):(?:\s+(.*))?', text)
            if match is None:
                raise ValueError(f"not a key: {text!r}")
            key, rest = match.group(1).strip('"'), (match.group(2) or "").strip()
            self.i += 1
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest.partition(" ")
                anchor, rest = anchor[1:], rest.strip()
            if rest:
                value = self.scalar(rest)
            elif self.i < len(self.lines) and self.lines[self.i][0] > indent:
                value = self.block(self.lines[self.i][0])
            elif self.i < len(self.lines) and self.lines[self.i][0] == indent and self.lines[self.i][1][:2] == "- ":
                value = self.sequence(indent)
            else:
                value = None
            if anchor:
                self.anchors[anchor] = value
            if key == "<<":
                result = {**value, **result}
            elif key in explicit:
                raise ValueError(f"duplicate key {key!r}")
            else:
                explicit.add(key)
                result[key] = value
        return result

    def sequence(self, indent: int) -> list[Any]:
        result = []
        while self.i < len(self.lines):
            level, text = self.lines[self.i]
            if level != indent or not text.startswith("- "):
                break
            self.i += 1
            result.append(self.scalar(text[2:].strip()))
        return result

    def scalar(self, text: str) -> Any:
        if text.startswith("*"):
            return self.anchors[text[1:]]
        if text.startswith("["):
            return json.loads(text)
        if text.startswith('"'):
            return json.loads(text)
        if text.startswith("'"):
            return text[1:-1]
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        return {"true": True, "false": False, "null": None}.get(text, text)


def _strip_comment(line: str) -> str:
    quoted = None
    for index, char in enumerate(line):
        if char in "\"'" and quoted in (None, char):
            quoted = None if quoted else char
        elif char == "#" and quoted is None and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line


def compose() -> dict[str, Any]:
    return load_yaml((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_compose_file_runs_workers_scheduler_postgres_redis_and_a_tls_proxy() -> None:
    services = compose()["services"]
    assert set(services) == {"bot", "scheduler", "postgres", "redis", "caddy"}
    bot, scheduler = services["bot"], services["scheduler"]
    assert bot["command"][:2] == ["run", "--workers"] and "--no-scheduler" in bot["command"]
    assert scheduler["command"] == ["scheduler"]
    assert bot["environment"]["WEB_LISTEN"] != bot["environment"]["WEBHOOK_LISTEN"]  # per-worker metrics ports
    for role in (bot, scheduler):
        env = role["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and env["REDIS_URL"].startswith("redis://")
        assert env["WEBHOOK_URL"].startswith("https://") and env["WEBHOOK_URL"].endswith("/webhook")
        assert role["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert role["build"]["dockerfile"] == "deploy/Dockerfile"
    assert all("healthcheck" in services[name] for name in ("postgres", "redis"))
    caddy = services["caddy"]
    assert caddy["image"].startswith("caddy") and "443:443" in caddy["ports"]
    site = [line.strip() for line in (DEPLOY / "Caddyfile").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    # only the webhook is public; /healthz, /readyz and /metrics answer inside the compose network
    assert [line for line in site if line.startswith("handle /")] == ["handle /webhook {"]
    assert "respond 404" in site and "reverse_proxy bot:8080" in site


def test_mini_yaml_reader_refuses_bad_indentation() -> None:
    import pytest

    with pytest.raises(ValueError):
        _MiniYaml("a:\n  b: 1\n   c: 2\n").document()
    merged = _MiniYaml("x: &x\n  k: 1\n  m: 2\ny:\n  <<: *x\n  j: [1, 2]\n  k: 3\n").document()
    assert merged == {"x": {"k": 1, "m": 2}, "y": {"k": 3, "m": 2, "j": [1, 2]}}
    with pytest.raises(ValueError):
        _MiniYaml("a: 1\na: 2\n").document()


def test_dockerfile_builds_a_non_root_image_with_the_redis_extra() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert any('pip install ".[redis]"' in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines[-1] == 'CMD ["run"]' and 'ENTRYPOINT ["qunbot"]' in lines
    copied = {line.split()[1] for line in lines if line.startswith("COPY ")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in packages["include"]:
        assert package.rstrip("*") in copied, package  # every package the wheel needs is in the build context
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    probe = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if '"-c"' in line)
    ast.parse(re.search(r'"-c", "(.*)"\]', probe).group(1))  # type: ignore[union-attr]  # the probe is Python


def test_systemd_units_run_commands_that_exist() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        start = parser["Service"]["ExecStart"].split()
        assert start[0].endswith("/qunbot") and start[1] in commands, unit.name
        assert parser["Service"]["User"] == "qunbot"
    assert "OnCalendar" in (DEPLOY / "systemd" / "qunbot-backup.timer").read_text()


def test_readme_names_the_extras_that_exist() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = (ROOT / "README.md").read_text()
    for extra in re.findall(r"qunbot\[(\w+)\]", readme):
        assert extra in project["optional-dependencies"]
    assert "pip install 'qunbot[redis]'" in readme
    assert any(dep.startswith("prometheus-client") for dep in project["dependencies"])
