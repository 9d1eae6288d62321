# SPDX-License-Identifier: LGPL-2.1-or-later
"""The real Codex CLI (@openai/codex from tests/clients' lockfile, a prebuilt native binary inside the npm
package) run non-interactively (`codex exec`) against kiro-proxyd's Responses API and the fake Kiro:
a plain answer, and a full tool loop (a shell command the fake asks for, its output sent back, a final
answer). The package comes from tests/clients' committed lockfile: `npm ci` runs there first when its
node_modules is missing or older than the lockfile (as tests/clients/run.sh does); skipped without node
and npm.

Contract: issue 13 ("Tests")."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import kirodtest
from proxyd_fixture import needs_proxyd, proxy_stack, stack, user_text  # noqa: F401

HERE = Path(__file__).resolve().parent
CLIENTS = HERE.parent / "clients"
CODEX = CLIENTS / "node_modules" / ".bin" / "codex"
MODEL = "claude-sonnet-4.5"

pytestmark = [needs_proxyd, pytest.mark.skipif(not shutil.which("node") or not shutil.which("npm"),
                                               reason="needs node and npm (Debian: apt-get install nodejs npm)")]


@pytest.fixture(scope="module", autouse=True)
def codex_installed():
        stamp = CLIENTS / "node_modules" / ".package-lock.json"
        lock = CLIENTS / "package-lock.json"
        if not CODEX.exists() or not stamp.exists() or lock.stat().st_mtime > stamp.stat().st_mtime:
                r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True, text=True,
                                   timeout=600)
                assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert CODEX.exists()


def codex(stack, tmp_path, prompt, timeout=120):
        home = tmp_path / "codex-home"
        work = tmp_path / "work"
        home.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        (home / "config.toml").write_text(f'''
model = "{MODEL}"
model_provider = "kirod"
approval_policy = "never"
sandbox_mode = "danger-full-access"
# Codex offers OpenAI's hosted web search by default; Kiro has none, and kiro-proxyd refuses built-in tools.
web_search = "disabled"

[model_providers.kirod]
name = "kirod"
base_url = "{stack.url}/v1"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
''')
        env = kirodtest.base_env(CODEX_HOME=str(home), HOME=str(tmp_path), RUST_LOG="warn")
        return subprocess.run([str(CODEX), "exec", "--skip-git-repo-check", "--json", "-C", str(work), prompt],
                              capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def events(out):
        evs = []
        for line in out.stdout.splitlines():
                try:
                        evs.append(json.loads(line))
                except ValueError:
                        pass
        return evs


def test_codex_plain_answer(stack, tmp_path):
        stack.chat.set_default({"text": ["Hello ", "from Kiro via kirod."]})
        out = codex(stack, tmp_path, "Say hello.")
        assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
        evs = events(out)
        msgs = [e["item"] for e in evs if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
        assert msgs and msgs[-1]["text"] == "Hello from Kiro via kirod.", out.stdout[-3000:]
        assert any(e.get("type") == "turn.completed" for e in evs), out.stdout[-3000:]
        req = stack.chat.last()
        assert "Say hello." in user_text(req)


def test_codex_tool_loop(stack, tmp_path):
        """The fake asks for a shell command through Codex's exec_command tool; Codex runs it and sends the
        output back as function_call_output; the fake's final answer ends the turn."""
        marker = "kirod-codex-marker-4711"
        stack.chat.set_default({"text": "unexpected extra request"})
        stack.chat.enqueue(
                {"match": "Run the check", "text": "I will run it.",
                 "tool_calls": [{"name": "exec_command", "id": "tooluse_codex1",
                                 "input_json": {"cmd": f"echo {marker} && pwd"}, "chunks": 3}]},
                {"match": "Run the check", "text": ["The command printed ", marker, "."]})
        out = codex(stack, tmp_path, "Run the check please.")
        assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
        evs = events(out)
        cmds = [e["item"] for e in evs if e.get("type") == "item.completed" and
                e["item"].get("type") == "command_execution"]
        assert cmds, out.stdout[-3000:]
        assert marker in cmds[0]["command"] and marker in cmds[0]["aggregated_output"], cmds
        assert cmds[0].get("exit_code") == 0, cmds
        msgs = [e["item"]["text"] for e in evs if e.get("type") == "item.completed" and
                e["item"].get("type") == "agent_message"]
        assert msgs[-1] == f"The command printed {marker}.", msgs
        # The second request carried the command's output back to Kiro as a tool result.
        reqs = [r for r in stack.chat.requests if b"Run the check" in r.raw_body]
        assert len(reqs) == 2, [r.outcome for r in reqs]
        assert "exec_command" in json.dumps(reqs[0].body["conversationState"]["currentMessage"])
        results = reqs[1].tool_results()
        assert results and results[0]["toolUseId"] == "tooluse_codex1", results
        text = json.dumps(results[0]["content"])
        assert marker in text and str(tmp_path / "work") in text, text
        tu = reqs[1].history[-1]["assistantResponseMessage"]["toolUses"][0]
        assert tu["name"] == "exec_command" and tu["input"]["cmd"].startswith(f"echo {marker}")
