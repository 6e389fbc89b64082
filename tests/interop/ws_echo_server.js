#!/usr/bin/env node
// An echo server built on the npm `ws` package, with permessage-deflate on,
// for tests/test_interop_deflate.py.
//
//   node ws_echo_server.js [OPTIONS_JSON]
//
// OPTIONS_JSON (optional) is merged into ws's perMessageDeflate options, e.g.
// '{"serverNoContextTakeover": true, "serverMaxWindowBits": 10}'. The
// threshold is 0, so that even 1-byte messages are compressed.
//
// stdout: the first line is the listening port (on 127.0.0.1, chosen by the
// system). Then one JSON object per line:
//   {"event": "connection", "offer": <request's Sec-WebSocket-Extensions>, "extensions": <accepted>}
//   {"event": "message", "binary": bool, "length": n, "sha256": hex}
//   {"event": "close", "code": n}
//   {"event": "error", "message": text}
// Every message is echoed as it came (text as text, binary as binary). The
// server stops when its stdin closes or on SIGTERM.

'use strict';

const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const extra = process.argv[2] ? JSON.parse(process.argv[2]) : {};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: { threshold: 0, ...extra },
});

wss.on('listening', () => {
  process.stdout.write(`${wss.address().port}\n`);
});

wss.on('connection', (ws, req) => {
  emit({
    event: 'connection',
    offer: req.headers['sec-websocket-extensions'] || null,
    extensions: ws.extensions,
  });
  ws.on('message', (data, isBinary) => {
    emit({
      event: 'message',
      binary: isBinary,
      length: data.length,
      sha256: crypto.createHash('sha256').update(data).digest('hex'),
    });
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', (err) => emit({ event: 'error', message: String(err && err.message) }));
  ws.on('close', (code) => emit({ event: 'close', code }));
});

wss.on('error', (err) => {
  process.stderr.write(`server error: ${err.stack || err}\n`);
  process.exit(2);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
