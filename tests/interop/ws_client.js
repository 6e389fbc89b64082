#!/usr/bin/env node
// A client built on the npm `ws` package, with permessage-deflate on, for
// tests/test_interop_deflate.py: it sends messages to an echo server and
// checks that each echo comes back byte for byte.
//
//   node ws_client.js URL SPEC_JSON      (or SPEC_JSON on stdin when omitted)
//
// SPEC_JSON:
//   {
//     "perMessageDeflate": {...},   // merged into ws's options (threshold is 0)
//     "messages": [{"type": "text" | "binary", "size": bytes,
//                   "content": "random" | "compressible",
//                   "compress": true | false | null,
//                   "fragments": n (default 1)}, ...],
//     "timeout": seconds            // for the whole run (default 30)
//   }
//
// Messages are sent one at a time, each after the echo of the previous one.
// "compress" is passed to ws.send when not null (false: an uncompressed frame
// inside a compressed session). "fragments" > 1 sends the message as that many
// frames (ws.send with fin: false), cut at byte offsets. Text messages are valid UTF-8 of exactly
// "size" bytes ("random" text mixes 1- to 4-byte characters).
//
// stdout: one JSON object,
//   {"ok": bool, "extensions": <response's Sec-WebSocket-Extensions>,
//    "sent": [{"type", "size", "sha256"}], "errors": [text, ...]}
// Exit status 0 when every echo matched, 1 otherwise.

'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const RANDOM_CHARS = ['a', 'Z', '7', ' ', '{', '\u00e9', '\u00df', '\u03a9', '\u0416', '\u20ac', '\u6f22', '\u3042', '\ud83d\ude00', '\ud83c\udf89'];

function randomText(size) {
  const parts = [];
  let total = 0;
  const picks = crypto.randomBytes(size);
  for (let i = 0; total < size; i++) {
    let ch = RANDOM_CHARS[picks[i % size] % RANDOM_CHARS.length];
    let n = Buffer.byteLength(ch);
    if (total + n > size) {
      ch = 'x';
      n = 1;
    }
    parts.push(ch);
    total += n;
  }
  return Buffer.from(parts.join(''), 'utf8');
}

function compressible(size) {
  const lines = [];
  let total = 0;
  for (let i = 0; total < size; i++) {
    const line = `{"seq": ${i}, "user": "user${i % 7}", "room": "lobby", "text": "hello from node, message ${i % 13}"}\n`;
    lines.push(line);
    total += line.length;
  }
  return Buffer.from(lines.join('').slice(0, size), 'utf8');
}

function makeMessage(spec) {
  if (spec.content === 'compressible') return compressible(spec.size);
  if (spec.type === 'text') return randomText(spec.size);
  return crypto.randomBytes(spec.size);
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

function run(url, spec) {
  const result = { ok: false, extensions: null, sent: [], errors: [] };
  const specs = spec.messages || [];
  const messages = specs.map(makeMessage);
  let index = 0;
  let finished = false;

  function finish(ok, error) {
    if (finished) return;
    finished = true;
    if (error) result.errors.push(error);
    result.ok = ok && result.errors.length === 0;
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
  }

  const timer = setTimeout(() => {
    finish(false, `timed out after ${spec.timeout || 30} s at message ${index}`);
  }, (spec.timeout || 30) * 1000);
  timer.unref();

  const ws = new WebSocket(url, {
    perMessageDeflate: { threshold: 0, ...(spec.perMessageDeflate || {}) },
    maxPayload: 64 * 1024 * 1024,
  });

  function sendNext() {
    if (index === messages.length) {
      ws.close(1000);
      return;
    }
    const s = specs[index];
    const data = messages[index];
    result.sent.push({ type: s.type, size: data.length, sha256: sha256(data) });
    const options = { binary: s.type === 'binary' };
    if (s.compress !== null && s.compress !== undefined) options.compress = s.compress;
    // Fragments are cut at byte offsets: a text fragment may end inside a character.
    const count = Math.max(1, s.fragments || 1);
    const step = Math.max(1, Math.ceil(data.length / count));
    const failed = (err) => {
      if (err) finish(false, `send ${index} failed: ${err.message}`);
    };
    if (count === 1 || data.length === 0) {
      ws.send(data, options, failed);
      return;
    }
    for (let at = 0; at < data.length; at += step) {
      const fin = at + step >= data.length;
      ws.send(data.subarray(at, at + step), { ...options, fin }, failed);
    }
  }

  ws.on('upgrade', (res) => {
    result.extensions = res.headers['sec-websocket-extensions'] || null;
  });
  ws.on('open', sendNext);
  ws.on('message', (data, isBinary) => {
    const s = specs[index];
    const sent = messages[index];
    if (s === undefined) {
      finish(false, `unexpected message after the last one (${data.length} bytes)`);
      return;
    }
    if (isBinary !== (s.type === 'binary')) {
      result.errors.push(`message ${index}: sent ${s.type}, echo came back ${isBinary ? 'binary' : 'text'}`);
    }
    if (!Buffer.isBuffer(data) || Buffer.compare(data, sent) !== 0) {
      let at = 0;
      while (at < Math.min(data.length, sent.length) && data[at] === sent[at]) at++;
      result.errors.push(
        `message ${index} (${s.type} ${s.size} B ${s.content}): echo differs ` +
          `(${data.length} B back, first difference at byte ${at})`
      );
    }
    index++;
    sendNext();
  });
  ws.on('close', (code, reason) => {
    if (index !== messages.length) {
      finish(false, `closed with ${code} ${reason} after ${index} of ${messages.length} messages`);
    } else {
      finish(true);
    }
  });
  ws.on('error', (err) => finish(false, `error: ${err.message}`));
}

function main() {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write('usage: node ws_client.js URL [SPEC_JSON]\n');
    process.exit(2);
  }
  if (process.argv[3]) {
    run(url, JSON.parse(process.argv[3]));
    return;
  }
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    input += chunk;
  });
  process.stdin.on('end', () => run(url, JSON.parse(input || '{}')));
}

main();
