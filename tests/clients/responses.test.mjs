// SPDX-License-Identifier: LGPL-2.1-or-later
// kiro-proxyd's Responses API (/v1/responses) driven by the official `openai` SDK (responses.create and
// responses.stream), against the fake Kiro service. Run by tests/clients/run.sh; skipped when
// KIROD_PROXY_URL is unset.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { BadRequestError } from 'openai';

import {
  API_KEY, KIMI_MODEL, KIMI_SKIP, MODEL, PROXY_URL, SKIP, TIMEOUT, currentMessage, fake, firstUserContent, kimi,
  nonce, toolResults, toolUseId,
} from './helpers.mjs';

const WEATHER = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
};

describe('OpenAI SDK Responses API against kiro-proxyd', { skip: SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new OpenAI({ baseURL: `${PROXY_URL}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('responses.create answers with output_text and usage', async () => {
    const n = nonce('rs-create');
    await fake.enqueue({ match: n, text: ['Hello ', 'from ', n] });
    const r = await client.responses.create({
      model: MODEL, instructions: 'Be brief.', input: `Say hello ${n}`, store: false,
    });
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, `Hello from ${n}`);
    assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0, JSON.stringify(r.usage));
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    const [req] = await fake.accepted(n);
    const c = firstUserContent(req);
    assert.ok(c.indexOf('Be brief.') < c.indexOf(`Say hello ${n}`), c);
  });

  it('responses.stream delivers text deltas and the final response', async () => {
    const n = nonce('rs-stream');
    const text = ['one ', 'two ', 'three ', n];
    await fake.enqueue({ match: n, text, split_frames: true });
    const stream = client.responses.stream({ model: MODEL, input: `count ${n}` });
    let deltas = '';
    const types = [];
    let lastSeq = -1;
    stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
    for await (const ev of stream) {
      types.push(ev.type);
      assert.equal(ev.sequence_number, lastSeq + 1);
      lastSeq = ev.sequence_number;
    }
    const final = await stream.finalResponse();
    assert.equal(deltas, text.join(''));
    assert.equal(final.output_text, text.join(''));
    assert.equal(final.status, 'completed');
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
  });

  it('streams a function call and completes the tool loop', async () => {
    const n = nonce('rs-tool');
    const id = toolUseId(n);
    await fake.enqueue({
      match: n, tool_calls: [{ name: 'get_weather', id, input_json: { city: 'Lisbon' }, chunks: 3 }],
    });
    const stream = client.responses.stream({ model: MODEL, tools: [WEATHER], input: `Weather in Lisbon? ${n}` });
    let argDeltas = 0;
    stream.on('response.function_call_arguments.delta', () => { argDeltas++; });
    const first = await stream.finalResponse();
    assert.equal(argDeltas, 3);
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(first.output));
    assert.equal(call.name, 'get_weather');
    assert.equal(call.call_id, id);
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Lisbon' });

    const n2 = nonce('rs-tool2');
    await fake.enqueue({ match: n2, text: 'It is sunny in Lisbon.' });
    const second = await client.responses.create({
      model: MODEL, tools: [WEATHER], store: false,
      input: [
        { role: 'user', content: `Weather in Lisbon? ${n}` },
        call,
        { type: 'function_call_output', call_id: call.call_id, output: `sunny ${n2}` },
      ],
    });
    assert.equal(second.output_text, 'It is sunny in Lisbon.');
    const [req] = await fake.accepted(n2);
    assert.equal(toolResults(req)[0].toolUseId, id);
    assert.equal(currentMessage(req).modelId, 'claude-sonnet-4.5');
  });

  it('continues a stored response with previous_response_id', async () => {
    const n = nonce('rs-prev');
    await fake.enqueue({ match: n, text: 'first answer' });
    const first = await client.responses.create({ model: MODEL, input: `remember ${n}` });
    const n2 = nonce('rs-prev2');
    await fake.enqueue({ match: n2, text: 'second answer' });
    const second = await client.responses.create({
      model: MODEL, input: `and now ${n2}`, previous_response_id: first.id,
    });
    assert.equal(second.output_text, 'second answer');
    const [req] = await fake.accepted(n2);
    assert.ok(JSON.stringify(req.body).includes(`remember ${n}`));
  });

  it('refuses built-in tools with a 400 naming them', async () => {
    await assert.rejects(
      client.responses.create({ model: MODEL, input: 'x', tools: [{ type: 'web_search' }] }),
      (e) => e instanceof BadRequestError && e.param === 'tools[0]' && /web_search/.test(e.message),
    );
  });
});

describe('OpenAI SDK Responses API with a Kimi model against kiro-proxyd', { skip: KIMI_SKIP, timeout: 10 * TIMEOUT }, () => {
  let client;

  before(() => {
    client = new OpenAI({ baseURL: `${PROXY_URL}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: TIMEOUT });
  });

  it('streams reasoning and a function call from Kimi, then replays them', async () => {
    const n = nonce('kimi-rs');
    await kimi.enqueue({
      match: n, reasoning: ['Need ', 'weather.'], text: ['Checking.'],
      tool_calls: [{ id: 'call_k1', name: 'get_weather', args: ['{"city":', '"Lima"}'] }],
    });
    const stream = client.responses.stream({
      model: KIMI_MODEL, tools: [WEATHER], reasoning: { effort: 'high' }, input: `Weather in Lima? ${n}`,
    });
    let summary = '';
    stream.on('response.reasoning_summary_text.delta', (e) => { summary += e.delta; });
    const first = await stream.finalResponse();
    assert.equal(first.status, 'completed');
    assert.equal(summary, 'Need weather.');
    assert.deepEqual(first.output.map((o) => o.type), ['reasoning', 'message', 'function_call']);
    assert.equal(first.output_text, 'Checking.');
    const call = first.output[2];
    assert.equal(call.call_id, 'call_k1');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Lima' });
    const [req] = await kimi.requests(n);
    assert.equal(req.headers.authorization, `Bearer ${(await kimi.tokens()).at(-1)}`);
    assert.deepEqual(req.body.thinking, { type: 'enabled' });

    const n2 = nonce('kimi-rs2');
    await kimi.enqueue({ match: n2, text: ['Mild in Lima.'] });
    const second = await client.responses.create({
      model: KIMI_MODEL, tools: [WEATHER], reasoning: { effort: 'high' }, store: false,
      input: [{ role: 'user', content: `Weather in Lima? ${n}` }, ...first.output,
        { type: 'function_call_output', call_id: call.call_id, output: `mild ${n2}` }],
    });
    assert.equal(second.output_text, 'Mild in Lima.');
    const [req2] = await kimi.requests(n2);
    const a = req2.body.messages.find((m) => m.role === 'assistant');
    assert.equal(a.reasoning_content, 'Need weather.');
    assert.equal(a.tool_calls[0].id, 'call_k1');
    assert.deepEqual(req2.body.messages.at(-1), { role: 'tool', tool_call_id: 'call_k1', content: `mild ${n2}` });
  });
});
