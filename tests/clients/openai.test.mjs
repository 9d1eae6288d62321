// SPDX-License-Identifier: LGPL-2.1-or-later
// kiro-proxyd's OpenAI API (/v1) driven by the official `openai` SDK, against the fake Kiro service.
// Run by tests/clients/run.sh; skipped when KIROD_PROXY_URL is unset.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, {
  APIError, AuthenticationError, BadRequestError, NotFoundError, RateLimitError,
} from 'openai';

import {
  API_KEY, CONFIGURED_KEY, KIMI_MODEL, KIMI_SKIP, MODEL, PROXY_URL, SKIP, TIMEOUT,
  currentMessage, declaredTools, fake, firstUserContent, largeText, nonce, sdkAttempt, state, toolResults,
  kimi, toolUseId, waitUntilServing,
} from './helpers.mjs';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city'],
    },
  },
};

/** Reads a chat completion stream into {content, reasoning, finish, usage, toolCalls, role, chunks}. */
async function collect(stream) {
  const out = { content: '', reasoning: '', finish: null, usage: null, toolCalls: [], role: null, chunks: 0 };
  for await (const chunk of stream) {
    out.chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage)
      out.usage = chunk.usage;
    for (const c of chunk.choices) {
      const d = c.delta ?? {};
      if (d.role)
        out.role = d.role;
      if (d.content)
        out.content += d.content;
      if (d.reasoning_content)
        out.reasoning += d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        const t = (out.toolCalls[tc.index] ??= { id: '', name: '', arguments: '' });
        if (tc.id)
          t.id = tc.id;
        if (tc.function?.name)
          t.name += tc.function.name;
        if (tc.function?.arguments)
          t.arguments += tc.function.arguments;
      }
      if (c.finish_reason)
        out.finish = c.finish_reason;
    }
  }
  return out;
}

describe('OpenAI SDK against kiro-proxyd', { skip: SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new OpenAI({ baseURL: `${PROXY_URL}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('lists the models', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes(MODEL), `models: ${ids.join(', ')}`);
    for (const m of page.data) {
      assert.equal(m.object, 'model');
      assert.equal(typeof m.id, 'string');
    }
  });

  it('answers a chat completion with the text Kiro streamed', async () => {
    const n = nonce('oa-chat');
    const text = ['Hello', ' from ', 'Kiro ', n, '.'];
    await fake.enqueue({ match: n, text });
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: `Say hello ${n}` }],
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, text.join(''));
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, JSON.stringify(r.usage));
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);

    const reqs = await fake.accepted(n);
    assert.equal(reqs.length, 1);
    const cur = currentMessage(reqs[0]);
    assert.equal(cur.modelId, 'claude-sonnet-4.5');
    assert.equal(cur.origin, 'AI_EDITOR');
    // A.4: the system prompt goes in front of the first user message.
    const c = firstUserContent(reqs[0]);
    assert.ok(c.includes('Be brief.') && c.indexOf('Be brief.') < c.indexOf(`Say hello ${n}`), c);
    // The imported credential is a Kiro API key (A.2).
    assert.equal(reqs[0].headers.tokentype, 'API_KEY');
  });

  it('maps dated model names onto Kiro model ids', async () => {
    const n = nonce('oa-alias');
    await fake.enqueue({ match: n, text: 'aliased' });
    const r = await client.chat.completions.create({
      model: 'claude-sonnet-4-5-20250929', messages: [{ role: 'user', content: `hi ${n}` }],
    });
    assert.equal(r.choices[0].message.content, 'aliased');
    const [req] = await fake.accepted(n);
    assert.equal(currentMessage(req).modelId, 'claude-sonnet-4.5');
  });

  it('streams deltas that add up to the full text, repeated events kept', async () => {
    const n = nonce('oa-stream');
    const text = ['Line one', '\n', '\n', 'Line two ', n];
    await fake.enqueue({ match: n, text, split_frames: true });
    const stream = await client.chat.completions.create({
      model: MODEL, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: `Two lines please ${n}` }],
    });
    const out = await collect(stream);
    assert.equal(out.content, text.join(''));
    assert.equal(out.finish, 'stop');
    assert.equal(out.role, 'assistant');
    assert.ok(out.usage && out.usage.prompt_tokens > 0 && out.usage.completion_tokens > 0,
      JSON.stringify(out.usage));
  });

  it('relays a 1 MiB answer intact', async () => {
    const n = nonce('oa-large');
    const size = 1 << 20;
    await fake.enqueue({ match: n, large_text_bytes: size });
    const stream = await client.chat.completions.create({
      model: MODEL, stream: true, messages: [{ role: 'user', content: `Write a lot ${n}` }],
    });
    const out = await collect(stream);
    assert.equal(Buffer.byteLength(out.content), size);
    assert.ok(out.content === largeText(size), 'the relayed text differs from what Kiro sent');
    assert.equal(out.finish, 'stop');
  });

  it('round-trips a tool call', async () => {
    const n = nonce('oa-tool');
    const kid = toolUseId(n);
    const args = { city: 'Paris', unit: 'celsius' };
    await fake.enqueue({
      match: n, text: 'Let me check.', tool_calls: [{ name: 'get_weather', id: kid, input_json: args, chunks: 3 }],
    });
    const messages = [{ role: 'user', content: `What is the weather in Paris? ${n}` }];
    const r1 = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER_TOOL] });
    const choice = r1.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'Let me check.');
    const calls = choice.message.tool_calls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].type, 'function');
    assert.equal(calls[0].function.name, 'get_weather');
    assert.deepEqual(JSON.parse(calls[0].function.arguments), args);
    assert.ok(calls[0].id);

    const answer = `It is 18 degrees and sunny in Paris. ${n}`;
    await fake.enqueue({ match: n, text: answer });
    messages.push({ role: 'assistant', content: choice.message.content, tool_calls: calls });
    messages.push({ role: 'tool', tool_call_id: calls[0].id, content: '18 degrees, sunny' });
    const r2 = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER_TOOL] });
    assert.equal(r2.choices[0].message.content, answer);
    assert.equal(r2.choices[0].finish_reason, 'stop');

    const reqs = await fake.accepted(n);
    assert.equal(reqs.length, 2);
    const second = reqs[1];
    const results = toolResults(second);
    assert.equal(results.length, 1);
    assert.equal(results[0].toolUseId, kid, 'the tool result must carry the toolUseId Kiro sent');
    assert.ok(JSON.stringify(results[0].content).includes('18 degrees, sunny'));
    assert.equal(results[0].status, 'success');
    const asst = state(second).history.map((h) => h.assistantResponseMessage).find((a) => a?.toolUses);
    assert.deepEqual(asst.toolUses, [{ toolUseId: kid, name: 'get_weather', input: args }]);
    assert.ok(declaredTools(second).some((t) => t.name === 'get_weather'));
  });

  it('streams tool call arguments, restoring a long tool name', async () => {
    const n = nonce('oa-tool-stream');
    const longName = 'look_up_the_current_weather_conditions_for_a_city_and_its_surrounding_region';
    assert.ok(longName.length > 64);
    const tool = { ...WEATHER_TOOL, function: { ...WEATHER_TOOL.function, name: longName } };
    const args = { city: 'Zürich', unit: 'fahrenheit' };
    const kid = toolUseId(n);
    // "$tool:0": the fake answers with whatever name kiro-proxyd declared upstream (the alias).
    await fake.enqueue({ match: n, text: '', tool_calls: [{ name: '$tool:0', id: kid, input_json: args, chunks: 5 }] });
    const stream = await client.chat.completions.create({
      model: MODEL, stream: true, tools: [tool], messages: [{ role: 'user', content: `Weather in Zürich? ${n}` }],
    });
    const out = await collect(stream);
    assert.equal(out.finish, 'tool_calls');
    assert.equal(out.toolCalls.length, 1);
    assert.equal(out.toolCalls[0].name, longName);
    assert.deepEqual(JSON.parse(out.toolCalls[0].arguments), args);

    const [req] = await fake.accepted(n);
    const declared = declaredTools(req).map((t) => t.name);
    assert.equal(declared.length, 1);
    assert.ok(declared[0].length <= 64, `upstream tool name ${declared[0]} is over 64 characters`);

    // The next turn sends the alias upstream again, so Kiro sees a consistent conversation.
    await fake.enqueue({ match: n, text: 'Cold.' });
    const r2 = await client.chat.completions.create({
      model: MODEL, tools: [tool],
      messages: [
        { role: 'user', content: `Weather in Zürich? ${n}` },
        { role: 'assistant', content: null, tool_calls: [{ id: out.toolCalls[0].id, type: 'function',
          function: { name: longName, arguments: out.toolCalls[0].arguments } }] },
        { role: 'tool', tool_call_id: out.toolCalls[0].id, content: '28 F' },
      ],
    });
    assert.equal(r2.choices[0].message.content, 'Cold.');
    const reqs = await fake.accepted(n);
    const asst = state(reqs[1]).history.map((h) => h.assistantResponseMessage).find((a) => a?.toolUses);
    assert.equal(asst.toolUses[0].name, declared[0]);
    assert.equal(toolResults(reqs[1])[0].toolUseId, kid);
  });

  it('returns reasoning_content for reasoning_effort', async () => {
    const n = nonce('oa-reason');
    const answer = `Hi there! ${n}`;
    await fake.enqueue({ match: n, thinking_text: ['The user ', 'wants a greeting.'], text: answer });
    const r = await client.chat.completions.create({
      model: MODEL, reasoning_effort: 'high', messages: [{ role: 'user', content: `Greet me ${n}` }],
    });
    const msg = r.choices[0].message;
    assert.equal(msg.content, answer);
    assert.equal(msg.reasoning_content, 'The user wants a greeting.');
    assert.ok(!msg.content.includes('<thinking>'));
    const [req] = await fake.accepted(n);
    // A.5: effort high → a 32000 budget in the prompt-tag prefix.
    assert.ok(firstUserContent(req).includes(
      '<thinking_mode>enabled</thinking_mode><max_thinking_length>32000</max_thinking_length>'),
    firstUserContent(req));
  });

  it('streams reasoning for a -thinking model, tags split across events', async () => {
    const n = nonce('oa-reason-stream');
    await fake.enqueue({
      match: n, thinking_text: 'Step one. Step two.', thinking_chunk_size: 3, text: ['Done ', n], split_frames: true,
    });
    const stream = await client.chat.completions.create({
      model: 'claude-sonnet-4.5-thinking', stream: true, messages: [{ role: 'user', content: `Think ${n}` }],
    });
    const out = await collect(stream);
    assert.equal(out.reasoning, 'Step one. Step two.');
    assert.equal(out.content, `Done ${n}`);
    assert.equal(out.finish, 'stop');
    const [req] = await fake.accepted(n);
    assert.equal(currentMessage(req).modelId, 'claude-sonnet-4.5');
    assert.ok(firstUserContent(req).includes('<thinking_mode>enabled</thinking_mode>'));
  });

  it('passes thinking tags through untouched when no reasoning was asked for', async () => {
    const n = nonce('oa-noreason');
    await fake.enqueue({ match: n, thinking_text: 'hmm', text: 'plain' });
    const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `x ${n}` }] });
    assert.equal(r.choices[0].message.content, '<thinking>hmm</thinking>\n\nplain');
    assert.ok(!r.choices[0].message.reasoning_content);
    const [req] = await fake.accepted(n);
    assert.ok(!firstUserContent(req).includes('<thinking_mode>'));
  });

  it('answers 404 NotFoundError for an unknown model, without calling Kiro', async () => {
    const n = nonce('oa-404');
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model-xyz', messages: [{ role: 'user', content: `hi ${n}` }] }),
      (e) => {
        assert.ok(e instanceof NotFoundError, `got ${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 404);
        assert.ok(e.message.length > 0);
        return true;
      });
    assert.equal((await fake.requests(n)).length, 0);
  });

  it('answers 400 BadRequestError for bad requests, without calling Kiro', async () => {
    const n = nonce('oa-400');
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (e) => {
      assert.ok(e instanceof BadRequestError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 400);
      return true;
    });
    // A.4: images only from data URLs.
    await assert.rejects(client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'text', text: `look ${n}` },
        { type: 'image_url', image_url: { url: 'https://example.invalid/cat.png' } }] }],
    }), (e) => {
      assert.ok(e instanceof BadRequestError, `got ${e?.constructor?.name}: ${e?.message}`);
      return true;
    });
    assert.equal((await fake.requests(n)).length, 0);
  });

  it("quotes Kiro's reason when Kiro rejects the request, without retrying", async () => {
    const n = nonce('oa-kiro400');
    await fake.enqueue({ match: n, status: 400, reason: 'INVALID_MODEL_ID', message: 'Invalid model.', repeat: 5 });
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${n}` }] }),
      (e) => {
        assert.ok(e instanceof BadRequestError, `got ${e?.constructor?.name}: ${e?.message}`);
        assert.match(e.message, /INVALID_MODEL_ID|Invalid model/);
        return true;
      });
    assert.equal((await fake.requests(n)).length, 1);
  });

  it('retries an overloaded upstream before the first byte', async () => {
    const n = nonce('oa-503');
    await fake.enqueue({ match: n, status: 503 }, { match: n, text: `second try ${n}` });
    const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${n}` }] });
    assert.equal(r.choices[0].message.content, `second try ${n}`);
    const reqs = await fake.accepted(n);
    assert.equal(reqs.length, 2);
    assert.deepEqual(reqs.map(sdkAttempt), [1, 2]);
    assert.notEqual(reqs[0].headers['amz-sdk-invocation-id'], reqs[1].headers['amz-sdk-invocation-id']);
  });

  it('retries after a 429 with Retry-After', async () => {
    const n = nonce('oa-429-once');
    await fake.enqueue({ match: n, status: 429, retry_after: 1 }, { match: n, text: 'after the wait' });
    const t0 = Date.now();
    const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${n}` }] });
    assert.equal(r.choices[0].message.content, 'after the wait');
    assert.ok(Date.now() - t0 >= 900, 'Retry-After: 1 was not honoured');
    assert.equal((await fake.accepted(n)).length, 2);
  });

  it('ends a stream that breaks mid-way with an error, not a normal stop', async () => {
    for (const [label, broken] of [
      ['exception', { text: ['partial ', 'answer'], exception: { message: 'boom' } }],
      ['truncated', { text: ['partial ', 'answer'], omit_closing_events: true }],
      ['cut', { text: ['partial ', 'answer and more text'], cut_after_bytes: 150 }],
      ['bad-crc', { text: ['partial ', 'answer'], bad_crc: true, bad_crc_frame: 1 }],
    ]) {
      const n = nonce(`oa-broken-${label}`);
      // repeat: kiro-proxyd may retry while nothing has reached the client yet.
      await fake.enqueue({ match: n, repeat: 8, ...broken });
      let out = null;
      await assert.rejects(async () => {
        const stream = await client.chat.completions.create({
          model: MODEL, stream: true, messages: [{ role: 'user', content: `hi ${n}` }],
        });
        out = await collect(stream);
      }, (e) => {
        assert.ok(e instanceof Error, `${label}: ${e}`);
        return true;
      }, `${label}: the stream ended normally: ${JSON.stringify(out)}`);
      assert.notEqual(out?.finish, 'stop', label);
      await fake.accepted(n);
    }
  });

  it('answers a non-streamed request whose upstream stream broke with a 5xx', async () => {
    const n = nonce('oa-broken-nonstream');
    await fake.enqueue({ match: n, repeat: 8, text: 'partial', omit_closing_events: true });
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${n}` }] }),
      (e) => {
        assert.ok(e instanceof APIError, `got ${e?.constructor?.name}: ${e?.message}`);
        assert.ok(e.status >= 500 && e.status < 600, `status ${e.status}`);
        return true;
      });
  });

  it('rejects a wrong API key with AuthenticationError', { skip: !CONFIGURED_KEY && 'kiro-proxyd has no API keys configured (KIROD_PROXY_API_KEY unset)' }, async () => {
    const bad = new OpenAI({ baseURL: `${PROXY_URL}/v1`, apiKey: 'sk-wrong-key', maxRetries: 0, timeout: TIMEOUT });
    await assert.rejects(bad.models.list(), (e) => {
      assert.ok(e instanceof AuthenticationError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 401);
      return true;
    });
  });

  // Last: it leaves the only credential cooling down for a moment.
  it('surfaces persistent upstream rate limiting as RateLimitError', async () => {
    const n = nonce('oa-429');
    await fake.enqueue({ match: n, status: 429, retry_after: 1, repeat: 20 });
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${n}` }] }),
      (e) => {
        assert.ok(e instanceof RateLimitError, `got ${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 429);
        return true;
      });
    const reqs = await fake.accepted(n);
    assert.ok(reqs.length >= 2, `kiro-proxyd did not retry the 429 (${reqs.length} request)`);
    await waitUntilServing(async (m) => {
      const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hi ${m}` }] });
      assert.equal(r.choices[0].message.content, 'ok');
    });
  });
});

describe('OpenAI SDK with a Kimi model against kiro-proxyd', { skip: KIMI_SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new OpenAI({ baseURL: `${PROXY_URL}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('streams reasoning_content and text from Kimi with our Kimi token', async () => {
    const n = nonce('kimi-oa');
    await kimi.enqueue({
      match: n, reasoning: ['Kimi ', 'ponders.'], text: ['Hi ', 'from ', n],
      usage: { prompt_tokens: 21, completion_tokens: 5, total_tokens: 26 },
    });
    const stream = await client.chat.completions.create({
      model: KIMI_MODEL, stream: true, stream_options: { include_usage: true }, reasoning_effort: 'high',
      messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: `Greet me ${n}` }],
    });
    const out = await collect(stream);
    assert.equal(out.content, `Hi from ${n}`);
    assert.equal(out.reasoning, 'Kimi ponders.');
    assert.equal(out.finish, 'stop');
    assert.equal(out.usage?.prompt_tokens, 21);
    assert.equal(out.usage?.completion_tokens, 5);

    const reqs = await kimi.requests(n);
    assert.equal(reqs.length, 1, JSON.stringify(reqs.map((r) => r.status)));
    const [req] = reqs;
    const tokens = await kimi.tokens();
    assert.ok(tokens.length > 0, 'the fake Kimi login issued no token');
    assert.equal(req.headers.authorization, `Bearer ${tokens.at(-1)}`);
    assert.notEqual(req.headers.authorization, `Bearer ${API_KEY}`);
    assert.match(req.headers['user-agent'], /^KimiCLI\//);
    assert.equal(req.path, '/coding/v1/chat/completions');
    assert.equal(req.body.model, KIMI_MODEL);
    assert.equal(req.body.stream, true);
    assert.deepEqual(req.body.thinking, { type: 'enabled' });
    assert.deepEqual(req.body.messages, [
      { role: 'system', content: 'Be brief.' }, { role: 'user', content: `Greet me ${n}` },
    ]);
  });
});
