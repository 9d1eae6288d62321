// SPDX-License-Identifier: LGPL-2.1-or-later
// Shared pieces of the SDK client tests: where the proxy and the fake Kiro service are, scripting the
// fake through its control endpoint (tests/integration/fakes/kiro_chat.py), and small helpers.
//
// Every test puts a fresh nonce in its prompt and scripts the fake with scenarios that `match` it, so a
// scenario is only ever consumed by that test's requests (retries included), and the requests the fake
// recorded can be looked up by the same nonce.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

export const PROXY_URL = process.env.KIROD_PROXY_URL?.replace(/\/+$/, '');
export const CONTROL_URL = process.env.KIROD_FAKE_CONTROL_URL?.replace(/\/+$/, '');
// The control endpoint of the fake Kimi services (kimi_fakes.py); run.sh logged a Kimi credential in.
export const KIMI_CONTROL_URL = process.env.KIROD_KIMI_CONTROL_URL?.replace(/\/+$/, '');
// The client API key run.sh configured in kiro-proxyd (APIKeysFile=); without one any key is accepted.
export const CONFIGURED_KEY = process.env.KIROD_PROXY_API_KEY || '';
export const API_KEY = CONFIGURED_KEY || 'sk-kirod-test-anything';

export const SKIP = !PROXY_URL
  ? 'KIROD_PROXY_URL is not set: run tests/clients/run.sh, which starts kiro-authd, kiro-proxyd and the fake Kiro service'
  : !CONTROL_URL
    ? 'KIROD_FAKE_CONTROL_URL is not set: these tests script the fake Kiro service through its control endpoint'
    : false;

export const MODEL = 'claude-sonnet-4.5';
export const KIMI_MODEL = 'kimi-for-coding';
export const KIMI_SKIP = SKIP || (!KIMI_CONTROL_URL
  ? 'KIROD_KIMI_CONTROL_URL is not set: run tests/clients/run.sh, which starts the fake Kimi services and logs in'
  : false);
export const TIMEOUT = 120_000;

export function nonce(label) {
  return `${label}-${randomUUID().slice(0, 12)}`;
}

async function control(method, path, body, base = CONTROL_URL) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok)
    throw new Error(`fake control ${method} ${path}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

export const fake = {
  /** Queues scenarios (objects; see kiro_chat.py). Each should carry `match: nonce`. */
  async enqueue(...scenarios) {
    for (const s of scenarios)
      assert.ok(s.match, 'a client test scenario must match its nonce');
    return control('POST', '/enqueue', scenarios);
  },
  /** Every request the fake recorded whose raw body contains `match`, oldest first. */
  async requests(match) {
    return control('GET', `/requests?match=${encodeURIComponent(match)}`);
  },
  /** Like requests(), asserting the fake accepted them all (it answers 400/403 to a malformed one). */
  async accepted(match) {
    const reqs = await this.requests(match);
    for (const r of reqs)
      assert.ok(r.outcome !== 'invalid' && r.outcome !== 'denied',
        `the fake Kiro service rejected kiro-proxyd's request (${r.status}): ${r.errors.join('; ')}`);
    return reqs;
  },
};

/** The fake Kimi services (kimi_fakes.py): chat scenarios as in tests/integration/fakes/kimi_chat.py. */
export const kimi = {
  /** Queues scenarios; each should carry `match: nonce` (only a request containing it takes one). */
  async enqueue(...scenarios) {
    for (const s of scenarios)
      assert.ok(s.match, 'a client test scenario must match its nonce');
    return control('POST', '/enqueue', scenarios, KIMI_CONTROL_URL);
  },
  /** The chat requests Kimi received whose raw body contains `match`: [{path, headers, body, status}]. */
  async requests(match) {
    return control('GET', `/requests?match=${encodeURIComponent(match)}`, undefined, KIMI_CONTROL_URL);
  },
  /** The access tokens the fake Kimi login issued to kiro-authd, oldest first. */
  async tokens() {
    return control('GET', '/tokens', undefined, KIMI_CONTROL_URL);
  },
};

/** The Kiro conversationState of a recorded request. */
export function state(req) {
  return req.body.conversationState;
}

export function currentMessage(req) {
  return state(req).currentMessage.userInputMessage;
}

/** Content of the first user message, where KIRO-PROTOCOL A.4/A.5 put the system text and the thinking prefix. */
export function firstUserContent(req) {
  const h = state(req).history ?? [];
  return h.length ? h[0].userInputMessage.content : currentMessage(req).content;
}

export function toolResults(req) {
  return currentMessage(req).userInputMessageContext?.toolResults ?? [];
}

export function declaredTools(req) {
  return (currentMessage(req).userInputMessageContext?.tools ?? []).map((t) => t.toolSpecification);
}

export function sdkAttempt(req) {
  const m = /^attempt=(\d+)/.exec(req.headers['amz-sdk-request'] ?? '');
  return m ? Number(m[1]) : NaN;
}

/** Same as large_text() in kiro_chat.py: exactly n UTF-8 bytes of deterministic text. */
export function largeText(n) {
  const unit = 'The quick brown fox jumps over the lazy dog. Déjà vu, 5 € each.\n';
  const ub = Buffer.byteLength(unit);
  const out = unit.repeat(Math.floor(n / ub));
  return out + 'x'.repeat(n - Buffer.byteLength(out));
}

/** A Kiro-style toolUseId derived from a nonce. */
export function toolUseId(n) {
  return `tooluse_${n.replace(/[^A-Za-z0-9]/g, '')}`;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * After a test that made Kiro rate limit the only credential (kiro-authd then cools it down for the
 * Retry-After time), waits until a plain request goes through again, so later tests start clean.
 * `attempt(n)` makes one request whose prompt contains n and throws if it fails.
 */
export async function waitUntilServing(attempt, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    const n = nonce('recover');
    await fake.enqueue({ match: n, text: 'ok' });
    try {
      await attempt(n);
      return;
    } catch (e) {
      last = e;
      await sleep(500);
    }
  }
  throw new Error(`kiro-proxyd did not serve again within ${timeoutMs} ms: ${last}`);
}
