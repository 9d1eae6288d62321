// SPDX-License-Identifier: LGPL-2.1-or-later
// kiro-proxyd's Anthropic API (/v1/messages, /v1/messages/count_tokens) driven by the official
// `@anthropic-ai/sdk`, against the fake Kiro service. Run by tests/clients/run.sh; skipped when
// KIROD_PROXY_URL is unset.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic, {
  APIError, AuthenticationError, BadRequestError, NotFoundError, RateLimitError,
} from '@anthropic-ai/sdk';

import {
  API_KEY, CONFIGURED_KEY, KIMI_MODEL, KIMI_SKIP, MODEL, PROXY_URL, SKIP, TIMEOUT,
  currentMessage, fake, firstUserContent, kimi, largeText, nonce, state, toolResults, toolUseId, waitUntilServing,
} from './helpers.mjs';

const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Current weather for a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['city'],
  },
};

function user(text) {
  return [{ role: 'user', content: text }];
}

/** Checks an SDK error's class, status and Anthropic error type ({type:"error", error:{type, message}}). */
function isError(cls, status, type) {
  return (e) => {
    assert.ok(e instanceof cls, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    assert.equal(e.error?.type, 'error', JSON.stringify(e.error));
    assert.equal(e.error?.error?.type, type, JSON.stringify(e.error));
    assert.ok(e.error.error.message, 'the error has no message');
    return true;
  };
}

describe('Anthropic SDK against kiro-proxyd', { skip: SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new Anthropic({ baseURL: PROXY_URL, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('answers a message with the text Kiro streamed', async () => {
    const n = nonce('an-msg');
    const text = ['Hello', ' from ', 'Kiro ', n];
    await fake.enqueue({ match: n, text });
    const r = await client.messages.create({
      model: MODEL, max_tokens: 1024, system: 'You are terse.', messages: user(`Say hello ${n}`),
    });
    assert.equal(r.type, 'message');
    assert.equal(r.role, 'assistant');
    assert.equal(typeof r.id, 'string');
    assert.equal(r.content.length, 1);
    assert.equal(r.content[0].type, 'text');
    assert.equal(r.content[0].text, text.join(''));
    assert.equal(r.stop_reason, 'end_turn');
    assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0, JSON.stringify(r.usage));

    const [req] = await fake.accepted(n);
    assert.equal(currentMessage(req).modelId, 'claude-sonnet-4.5');
    const c = firstUserContent(req);
    assert.ok(c.includes('You are terse.') && c.indexOf('You are terse.') < c.indexOf(`Say hello ${n}`), c);
  });

  it('keeps one Kiro conversation id per client session (metadata.user_id)', async () => {
    const n = nonce('an-session');
    const session = '3f2a9c1e-7b4d-4e8a-9c6f-1a2b3c4d5e6f';
    const userId = `user_0123abcd_account__session_${session}`;
    await fake.enqueue({ match: n, text: 'one', repeat: 2 }, { match: n, text: 'three', repeat: 2 });
    for (let i = 0; i < 2; i++)
      await client.messages.create({ model: MODEL, max_tokens: 100, metadata: { user_id: userId }, messages: user(`a ${n}`) });
    for (let i = 0; i < 2; i++)
      await client.messages.create({ model: MODEL, max_tokens: 100, messages: user(`b ${n}`) });
    const ids = (await fake.accepted(n)).map((r) => state(r).conversationId);
    assert.equal(ids.length, 4);
    assert.equal(ids[0], ids[1], 'the same session got different conversation ids');
    assert.notEqual(ids[2], ids[3], 'requests without a session id share a conversation id');
    assert.notEqual(ids[0], ids[2]);
  });

  it('streams with messages.stream() and assembles the final message', async () => {
    const n = nonce('an-stream');
    const text = ['Line one', '\n', '\n', 'Line two ', n];
    await fake.enqueue({ match: n, text, split_frames: true });
    const stream = client.messages.stream({ model: MODEL, max_tokens: 1024, messages: user(`Two lines ${n}`) });
    let deltas = '';
    stream.on('text', (d) => { deltas += d; });
    const msg = await stream.finalMessage();
    assert.equal(deltas, text.join(''));
    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0].type, 'text');
    assert.equal(msg.content[0].text, text.join(''));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, JSON.stringify(msg.usage));
  });

  it('sends the SSE events in the documented order', async () => {
    const n = nonce('an-events');
    await fake.enqueue({ match: n, text: ['a', 'b', 'c'] });
    const stream = await client.messages.create({ model: MODEL, max_tokens: 100, stream: true, messages: user(`x ${n}`) });
    const types = [];
    for await (const ev of stream)
      types.push(ev.type);
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(types.at(-2), 'message_delta');
    const body = types.slice(1, -2);
    assert.equal(body[0], 'content_block_start');
    assert.equal(body.at(-1), 'content_block_stop');
    assert.ok(body.slice(1, -1).every((t) => t === 'content_block_delta'), types.join(' '));
  });

  it('relays a 1 MiB answer intact', async () => {
    const n = nonce('an-large');
    const size = 1 << 20;
    await fake.enqueue({ match: n, large_text_bytes: size });
    const stream = client.messages.stream({ model: MODEL, max_tokens: 64000, messages: user(`Write a lot ${n}`) });
    const text = await stream.finalText();
    assert.equal(Buffer.byteLength(text), size);
    assert.ok(text === largeText(size), 'the relayed text differs from what Kiro sent');
  });

  it('round-trips a tool use', async () => {
    const n = nonce('an-tool');
    const kid = toolUseId(n);
    const input = { city: 'Paris', unit: 'celsius' };
    await fake.enqueue({
      match: n, text: 'Let me check.', tool_calls: [{ name: 'get_weather', id: kid, input_json: input, chunks: 4 }],
    });
    const messages = user(`What is the weather in Paris? ${n}`);
    const r1 = await client.messages.create({ model: MODEL, max_tokens: 1024, tools: [WEATHER_TOOL], messages });
    assert.equal(r1.stop_reason, 'tool_use');
    assert.deepEqual(r1.content.map((b) => b.type), ['text', 'tool_use']);
    assert.equal(r1.content[0].text, 'Let me check.');
    const tu = r1.content[1];
    assert.equal(tu.name, 'get_weather');
    assert.deepEqual(tu.input, input);
    assert.ok(tu.id);

    const answer = `It is 18 degrees and sunny. ${n}`;
    await fake.enqueue({ match: n, text: answer });
    messages.push({ role: 'assistant', content: r1.content });
    messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: '18 degrees, sunny' }] });
    const r2 = await client.messages.create({ model: MODEL, max_tokens: 1024, tools: [WEATHER_TOOL], messages });
    assert.equal(r2.stop_reason, 'end_turn');
    assert.equal(r2.content[0].text, answer);

    const reqs = await fake.accepted(n);
    assert.equal(reqs.length, 2);
    const results = toolResults(reqs[1]);
    assert.equal(results.length, 1);
    assert.equal(results[0].toolUseId, kid, 'the tool result must carry the toolUseId Kiro sent');
    assert.ok(JSON.stringify(results[0].content).includes('18 degrees, sunny'));
    const asst = state(reqs[1]).history.map((h) => h.assistantResponseMessage).find((a) => a?.toolUses);
    assert.deepEqual(asst.toolUses, [{ toolUseId: kid, name: 'get_weather', input }]);
  });

  it('streams two tool uses with parsed inputs', async () => {
    const n = nonce('an-tool-stream');
    const a = { city: 'Oslo' };
    const b = { city: 'Kyiv', unit: 'celsius' };
    await fake.enqueue({
      match: n, split_frames: true, tool_calls: [
        { name: 'get_weather', id: `${toolUseId(n)}a`, input_json: a, chunks: 3 },
        { name: 'get_weather', id: `${toolUseId(n)}b`, input_json: b, chunks: 2 },
      ],
    });
    const stream = client.messages.stream({
      model: MODEL, max_tokens: 1024, tools: [WEATHER_TOOL], messages: user(`Oslo and Kyiv? ${n}`),
    });
    const msg = await stream.finalMessage();
    assert.equal(msg.stop_reason, 'tool_use');
    const uses = msg.content.filter((x) => x.type === 'tool_use');
    assert.equal(uses.length, 2);
    assert.deepEqual(uses.map((u) => u.input), [a, b]);
    assert.notEqual(uses[0].id, uses[1].id);
  });

  it('returns a thinking block with a signature before the text', async () => {
    const n = nonce('an-think');
    const answer = `The answer is 42. ${n}`;
    await fake.enqueue({ match: n, thinking_text: ['Let me think ', 'about it.'], text: answer });
    const params = {
      model: MODEL, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 2000 }, messages: user(`Why? ${n}`),
    };
    const r = await client.messages.create(params);
    assert.deepEqual(r.content.map((b) => b.type), ['thinking', 'text']);
    assert.equal(r.content[0].thinking, 'Let me think about it.');
    assert.equal(typeof r.content[0].signature, 'string');
    assert.ok(r.content[0].signature.length > 0, 'empty signature');
    assert.equal(r.content[1].text, answer);
    assert.equal(r.stop_reason, 'end_turn');
    const [req] = await fake.accepted(n);
    assert.ok(firstUserContent(req).includes(
      '<thinking_mode>enabled</thinking_mode><max_thinking_length>2000</max_thinking_length>'),
    firstUserContent(req));

    // The thinking block goes back in the next turn, as clients do.
    await fake.enqueue({ match: n, text: 'Follow-up.' });
    const r2 = await client.messages.create({
      ...params,
      messages: [...params.messages, { role: 'assistant', content: r.content }, { role: 'user', content: 'And?' }],
    });
    assert.equal(r2.content.at(-1).text, 'Follow-up.');
    const reqs = await fake.accepted(n);
    const asst = state(reqs[1]).history.find((h) => h.assistantResponseMessage).assistantResponseMessage;
    assert.ok(asst.content.includes(answer), asst.content);
  });

  it('streams thinking with tags split across events', async () => {
    const n = nonce('an-think-stream');
    await fake.enqueue({
      match: n, thinking_text: 'Step one. Step two.', thinking_chunk_size: 4, text: ['Done ', n], split_frames: true,
    });
    const stream = client.messages.stream({
      model: MODEL, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 2000 }, messages: user(`Think ${n}`),
    });
    let thinking = '';
    stream.on('thinking', (d) => { thinking += d; });
    const msg = await stream.finalMessage();
    assert.equal(thinking, 'Step one. Step two.');
    assert.deepEqual(msg.content.map((b) => b.type), ['thinking', 'text']);
    assert.equal(msg.content[0].thinking, 'Step one. Step two.');
    assert.ok(msg.content[0].signature, 'no signature on the streamed thinking block');
    assert.equal(msg.content[1].text, `Done ${n}`);
  });

  it('turns native reasoning events into a thinking block', async () => {
    const n = nonce('an-native');
    await fake.enqueue({ match: n, reasoning: ['Native ', 'thought.'], reasoning_signature: `sig-${n}`, text: 'Ok.' });
    const r = await client.messages.create({
      model: MODEL, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 2000 }, messages: user(`Go ${n}`),
    });
    assert.deepEqual(r.content.map((b) => b.type), ['thinking', 'text']);
    assert.equal(r.content[0].thinking, 'Native thought.');
    assert.ok(r.content[0].signature);
    assert.equal(r.content[1].text, 'Ok.');
  });

  it('counts tokens the same way responses report them', async () => {
    const n = nonce('an-count');
    const params = {
      model: MODEL,
      system: 'You are a helpful assistant.',
      messages: user(`Count me ${n} ${'lorem ipsum dolor sit amet '.repeat(40)}`),
    };
    const ct = await client.messages.countTokens(params);
    assert.ok(Number.isInteger(ct.input_tokens) && ct.input_tokens > 0, JSON.stringify(ct));
    // No contextUsageEvent and no metadataEvent: the response's input_tokens come from the estimator
    // (A.6), the one count_tokens uses.
    await fake.enqueue({ match: n, text: 'ok', context_usage: false });
    const r = await client.messages.create({ ...params, max_tokens: 100 });
    assert.equal(r.usage.input_tokens, ct.input_tokens);
    assert.equal((await fake.accepted(n)).length, 1, 'count_tokens must not call Kiro');

    const longer = await client.messages.countTokens({
      ...params, messages: user(params.messages[0].content + ' more words'.repeat(300)),
    });
    assert.ok(longer.input_tokens > ct.input_tokens);
    const withTools = await client.messages.countTokens({ ...params, tools: [WEATHER_TOOL] });
    assert.ok(withTools.input_tokens > ct.input_tokens);
  });

  it('answers 404 not_found_error for an unknown model, without calling Kiro', async () => {
    const n = nonce('an-404');
    await assert.rejects(
      client.messages.create({ model: 'no-such-model-xyz', max_tokens: 10, messages: user(`hi ${n}`) }),
      isError(NotFoundError, 404, 'not_found_error'));
    assert.equal((await fake.requests(n)).length, 0);
  });

  it('answers 400 invalid_request_error for bad requests, without calling Kiro', async () => {
    const n = nonce('an-400');
    await assert.rejects(client.messages.create({ model: MODEL, max_tokens: 10, messages: [] }),
      isError(BadRequestError, 400, 'invalid_request_error'));
    await assert.rejects(client.messages.create({
      model: MODEL, max_tokens: 10,
      messages: [{ role: 'user', content: [{ type: 'text', text: `look ${n}` },
        { type: 'image', source: { type: 'url', url: 'https://example.invalid/cat.png' } }] }],
    }), isError(BadRequestError, 400, 'invalid_request_error'));
    assert.equal((await fake.requests(n)).length, 0);
  });

  it('ends a stream that breaks mid-way with an error, not end_turn', async () => {
    for (const [label, broken] of [
      ['exception', { text: ['partial ', 'answer'], exception: { message: 'boom' } }],
      ['truncated', { text: ['partial ', 'answer'], omit_closing_events: true }],
      ['malformed', { text: ['partial ', 'answer'], malformed_json_payload: true }],
    ]) {
      const n = nonce(`an-broken-${label}`);
      await fake.enqueue({ match: n, repeat: 8, ...broken });
      const stream = client.messages.stream({ model: MODEL, max_tokens: 100, messages: user(`hi ${n}`) });
      let stop = null;
      stream.on('message', (m) => { stop = m.stop_reason; });
      await assert.rejects(stream.finalMessage(), (e) => {
        assert.ok(e instanceof Error, `${label}: ${e}`);
        return true;
      }, `${label}: the stream ended normally`);
      assert.notEqual(stop, 'end_turn', label);
      await fake.accepted(n);
    }
  });

  it('answers a non-streamed request whose upstream broke with a 5xx', async () => {
    const n = nonce('an-broken-nonstream');
    await fake.enqueue({ match: n, repeat: 8, text: 'partial', exception: { message: 'boom' } });
    await assert.rejects(client.messages.create({ model: MODEL, max_tokens: 100, messages: user(`hi ${n}`) }), (e) => {
      assert.ok(e instanceof APIError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.ok(e.status >= 500 && e.status < 600, `status ${e.status}`);
      return true;
    });
  });

  it('rejects a wrong API key with AuthenticationError', { skip: !CONFIGURED_KEY && 'kiro-proxyd has no API keys configured (KIROD_PROXY_API_KEY unset)' }, async () => {
    const bad = new Anthropic({ baseURL: PROXY_URL, apiKey: 'sk-wrong-key', maxRetries: 0, timeout: TIMEOUT });
    await assert.rejects(bad.messages.create({ model: MODEL, max_tokens: 10, messages: user('hi') }),
      isError(AuthenticationError, 401, 'authentication_error'));
  });

  // Last: it leaves the only credential cooling down for a moment.
  it('surfaces persistent upstream rate limiting as RateLimitError', async () => {
    const n = nonce('an-429');
    await fake.enqueue({ match: n, status: 429, retry_after: 1, repeat: 20 });
    await assert.rejects(client.messages.create({ model: MODEL, max_tokens: 10, messages: user(`hi ${n}`) }),
      isError(RateLimitError, 429, 'rate_limit_error'));
    await waitUntilServing(async (m) => {
      const r = await client.messages.create({ model: MODEL, max_tokens: 10, messages: user(`hi ${m}`) });
      assert.equal(r.content[0].text, 'ok');
    });
  });
});

describe('Anthropic SDK with a Kimi model against kiro-proxyd', { skip: KIMI_SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new Anthropic({ baseURL: PROXY_URL, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('streams a thinking block and text from Kimi with our Kimi token', async () => {
    const n = nonce('kimi-an');
    await kimi.enqueue({
      match: n, reasoning: ['Think ', 'it over.'], text: ['Sure, ', n],
      usage: { prompt_tokens: 33, completion_tokens: 6, total_tokens: 39 },
    });
    const stream = client.messages.stream({
      model: KIMI_MODEL, max_tokens: 1024, thinking: { type: 'enabled', budget_tokens: 2000 },
      system: 'Be brief.', messages: user(`Help ${n}`),
    });
    let thinking = '';
    let text = '';
    stream.on('thinking', (d) => { thinking += d; });
    stream.on('text', (d) => { text += d; });
    const msg = await stream.finalMessage();
    assert.equal(thinking, 'Think it over.');
    assert.equal(text, `Sure, ${n}`);
    assert.deepEqual(msg.content.map((b) => b.type), ['thinking', 'text']);
    assert.equal(msg.content[0].thinking, 'Think it over.');
    assert.equal(msg.content[1].text, `Sure, ${n}`);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.model, KIMI_MODEL);
    assert.equal(msg.usage.input_tokens, 33);
    assert.equal(msg.usage.output_tokens, 6);

    const reqs = await kimi.requests(n);
    assert.equal(reqs.length, 1, JSON.stringify(reqs.map((r) => r.status)));
    const [req] = reqs;
    const tokens = await kimi.tokens();
    assert.ok(tokens.length > 0, 'the fake Kimi login issued no token');
    assert.equal(req.headers.authorization, `Bearer ${tokens.at(-1)}`);
    assert.equal(req.headers['x-api-key'], undefined);
    assert.match(req.headers['user-agent'], /^KimiCLI\//);
    assert.equal(req.body.model, KIMI_MODEL);
    assert.deepEqual(req.body.thinking, { type: 'enabled' });
    assert.deepEqual(req.body.messages, [
      { role: 'system', content: 'Be brief.' }, { role: 'user', content: `Help ${n}` },
    ]);
  });
});
