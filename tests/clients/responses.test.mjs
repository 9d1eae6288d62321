// SPDX-License-Identifier: LGPL-2.1-or-later
// kiro-proxyd's Responses API (/v1/responses) driven by the official `openai` SDK (responses.create and
// responses.stream), against the fake Kiro service. Run by tests/clients/run.sh; skipped when
// KIROD_PROXY_URL is unset.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { BadRequestError } from 'openai';

import {
  API_KEY, MODEL, PROXY_URL, SKIP, TIMEOUT, currentMessage, fake, firstUserContent, nonce, toolResults,
  toolUseId,
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
