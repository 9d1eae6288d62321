# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's live model catalog: Kiro's ListAvailableModels (KIRO-PROTOCOL B §5.2) asked when first
needed and then at most hourly, merged with the built-in alias table, served on /v1/models (OpenAI's shape;
Anthropic's with anthropic-version); a model Kiro lists that the table lacks is usable under its own id.

Contract: issue 13 ("Live catalog")."""

import json

from fakes.kiro_chat import DEFAULT_MODELS, _model
from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, PROFILE_ARN, needs_proxyd, proxy_stack, stack  # noqa: F401

pytestmark = needs_proxyd

NEW = _model("claude-nova-9", "Claude Nova 9", 512000, 96000)


def test_catalog_fetched_once_and_merged(stack):
        stack.chat.set_models(DEFAULT_MODELS + [NEW], page_size=5)
        r = stack.get("/v1/models")
        assert r.status == 200, r
        models = {m["id"]: m for m in r.json()["data"]}
        # Three pages of 5, with the bearer token and the profile.
        reqs = stack.chat.model_requests
        assert len(reqs) == 3, reqs
        assert [q.get("nextToken") for _, q, _ in reqs] == [None, "5", "10"]
        assert all(q["origin"] == "AI_EDITOR" and q["profileArn"] == PROFILE_ARN for _, q, _ in reqs)
        assert all(h["authorization"] == f"Bearer {stack.access_token()}" for _, _, h in reqs)
        # The new model with Kiro's limits; the known ones with their aliases; the table fills in where
        # Kiro gives no tokenLimits (glm-5).
        nova = models["claude-nova-9"]
        assert nova["context_window"] == 512000 and nova["max_output_tokens"] == 96000
        assert nova["listed_by_kiro"] is True and nova["thinking"] is True and "claude-nova-9-thinking" in models
        assert models["glm-5"]["context_window"] == 200000 and models["glm-5"]["thinking"] is False
        assert "claude-opus-4.1" in models["claude-opus-4.5"]["aliases"]
        assert models["claude-opus-4.7"]["max_output_tokens"] == 128000
        # Cached: a second listing asks Kiro nothing.
        assert stack.get("/v1/models").status == 200
        assert len(stack.chat.model_requests) == 3

        # The new model is usable under its own id, with and without -thinking.
        stack.chat.enqueue({"text": "hi from nova"})
        r = stack.post(CHAT_PATH, {"model": "claude-nova-9", "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 200, r
        assert stack.chat.last().body["conversationState"]["currentMessage"]["userInputMessage"]["modelId"] == \
                "claude-nova-9"
        stack.chat.enqueue({"text": "ok"})
        r = stack.post("/v1/responses", {"model": "claude-nova-9-thinking", "input": "x"})
        assert r.status == 200, r


def test_unknown_model_fetches_the_catalog_first(stack):
        """A model nobody listed yet: the proxy asks Kiro before answering 404."""
        stack.chat.set_models([NEW, _model("claude-sonnet-4.5", "Claude Sonnet 4.5", 200000, 64000)])
        stack.chat.enqueue({"text": "nova here"})
        r = stack.post(MESSAGES_PATH, {"model": "claude-nova-9", "max_tokens": 50,
                                       "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 200, r
        assert len(stack.chat.model_requests) == 1
        # Still unknown after the (fresh) catalog: 404 at once, no second fetch.
        r = stack.post(CHAT_PATH, {"model": "claude-nothing-1", "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"
        assert len(stack.chat.model_requests) == 1


def test_anthropic_shape(stack):
        stack.chat.set_models([NEW])
        r = stack.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        assert r.status == 200, r
        b = r.json()
        assert b["has_more"] is False and b["first_id"] == "claude-nova-9" and b["last_id"] == "claude-nova-9"
        assert b["data"] == [{"type": "model", "id": "claude-nova-9", "display_name": "Claude Nova 9",
                              "created_at": "2025-01-01T00:00:00Z"}]


def test_failure_serves_the_table(stack):
        stack.chat.set_models(status=500)
        r = stack.get("/v1/models")
        assert r.status == 200
        models = {m["id"]: m for m in r.json()["data"]}
        assert "claude-sonnet-4.5" in models and models["claude-sonnet-4.5"]["listed_by_kiro"] is False
        assert len(stack.chat.model_requests) >= 1
        n = len(stack.chat.model_requests)
        # A failed fetch is not retried at once.
        assert stack.get("/v1/models").status == 200
        assert len(stack.chat.model_requests) == n
        # Chat still works with the table's names.
        stack.chat.enqueue({"text": "fine"})
        assert stack.post(CHAT_PATH, {"model": "claude-sonnet-4.5",
                                      "messages": [{"role": "user", "content": "x"}]}).status == 200


def test_client_hangs_up_while_the_catalog_is_fetched(stack):
        import socket
        import time
        stack.chat.set_models([NEW])
        s = socket.create_connection(("127.0.0.1", stack.port))
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        time.sleep(0.3)
        r = stack.get("/v1/models")
        assert r.status == 200 and any(m["id"] == "claude-nova-9" for m in r.json()["data"])


def test_kiroctl_models_against_the_proxy(stack):
        import subprocess
        import kirodtest
        stack.chat.set_models([NEW, _model("claude-opus-4.5", "Claude Opus 4.5", 200000, 64000)])
        kiroctl = str(kirodtest.BUILD_DIR / "kiroctl" / "kiroctl")
        out = subprocess.run([kiroctl, "models", "--json", f"--proxy=unix:{stack.unix_path}"], capture_output=True,
                             text=True, timeout=30, env=kirodtest.base_env())
        assert out.returncode == 0, out.stderr
        j = json.loads(out.stdout)
        assert j["source"] == f"unix:{stack.unix_path}"
        models = {m["id"]: m for m in j["models"]}
        assert set(models) == {"claude-nova-9", "claude-opus-4.5"}
        assert models["claude-nova-9"]["context_window"] == 512000
        assert models["claude-opus-4.5"]["aliases"] == ["claude-opus-4", "claude-opus-4.1", "claude-opus-4.5-thinking"]
        out = subprocess.run([kiroctl, "models", f"--proxy={stack.url}"], capture_output=True, text=True, timeout=30,
                             env=kirodtest.base_env())
        assert out.returncode == 0, out.stderr
        assert "claude-nova-9" in out.stdout and "512000" in out.stdout and "listed" in out.stdout
