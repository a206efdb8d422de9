#!/usr/bin/env node
// RPC Lab: an Apache Thrift client for the key-value service, written in JavaScript.
//
// It is Apache Thrift's own implementation end to end: the `thrift` npm package (the
// Apache Thrift project's Node.js library) and the code the Apache Thrift compiler
// generates from protos/kv.thrift. The server it calls (rpclab.adapters.thrift) is a
// different implementation, thriftpy2 in Python: what they share is the IDL and the
// binary protocol in framed transport.
//
//   thrift --gen js:node,es6 -out gen-nodejs ../../protos/kv.thrift   (once: mkdir gen-nodejs first)
//   node kv_thrift_client.js 127.0.0.1:9090 put greeting hello
//   node kv_thrift_client.js 127.0.0.1:9090 get greeting
//   node kv_thrift_client.js 127.0.0.1:9090 increment visits 5
//   node kv_thrift_client.js 127.0.0.1:9090 remove greeting
//   node kv_thrift_client.js 127.0.0.1:9090 keys
//   node kv_thrift_client.js 127.0.0.1:9090 demo     (a scripted tour of every call)
//
// rpclab.adapters.thrift_node_client runs the compiler into a cache folder and passes it
// with --gen DIR. Each call prints one JSON line on stdout. An i64 (increment's value)
// prints as a string, exactly: a JavaScript number is a double and cannot hold every i64.
// Exit status: 0 on success; 1 when a call fails (the JSON line then holds
// "error": {"exception": "NotFound", "message": ...}, and stderr says it in words);
// 2 for a usage error. Every call gives up after --timeout-ms (default 5000): Thrift's
// protocol carries no deadline, so the limit is the client's alone.
'use strict';

const path = require('path');

const USAGE = `usage: node kv_thrift_client.js [--gen DIR] [--timeout-ms N] HOST:PORT COMMAND [ARGS...] [-- ARGS...]
--gen DIR is where the compiler's gen-nodejs output is (default: gen-nodejs beside this file).
Every argument after -- is a key or a value, even one that starts with a dash.
commands:
  get KEY                the value at KEY
  put KEY VALUE          store VALUE at KEY
  remove KEY             remove KEY (Thrift's name for delete: delete is reserved in its IDL)
  increment KEY [AMOUNT] add AMOUNT (default 1) to the integer at KEY
  keys                   every key, sorted
  demo                   put, get, increment twice, keys, remove, then a get that fails with NotFound`;

function usageError(message) {
  process.stderr.write(`kv_thrift_client: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = [];
  let timeoutMs = 5000;
  let gen = path.join(__dirname, 'gen-nodejs');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') {
      args.push(...argv.slice(i + 1));
      break;
    } else if (argv[i] === '--timeout-ms') {
      timeoutMs = Number(argv[++i]);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) usageError('--timeout-ms needs a positive whole number');
    } else if (argv[i] === '--gen') {
      gen = argv[++i];
      if (!gen) usageError('--gen needs a folder');
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else {
      args.push(argv[i]);
    }
  }
  if (args.length < 2) usageError('expected an address and a command');
  const [address, command, ...rest] = args;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d+)$/.exec(address);
  if (!match) usageError(`address must be HOST:PORT, not ${address}`);
  return { host: match[1] || match[2], port: Number(match[3]), command, rest, timeoutMs, gen };
}

function loadModules(gen) {
  let thrift;
  try {
    thrift = require('thrift');
  } catch (err) {
    process.stderr.write(`kv_thrift_client: ${err.message}\nInstall the client's packages first: run \`npm ci\` in ${__dirname}\n`);
    process.exit(2);
  }
  try {
    return { thrift, KV: require(path.resolve(gen, 'KV.js')), types: require(path.resolve(gen, 'kv_types.js')) };
  } catch (err) {
    process.stderr.write(
      `kv_thrift_client: cannot load the generated code in ${gen}: ${err.message.split('\n')[0]}\n` +
      'Generate it with Apache Thrift\'s compiler: thrift --gen js:node,es6 -out DIR protos/kv.thrift\n' +
      `(code generated outside ${__dirname} finds the thrift package with NODE_PATH=${path.join(__dirname, 'node_modules')})\n`);
    process.exit(2);
  }
}

// One call: the method, its arguments, and how to show the result.
function planCall(thrift, command, rest) {
  const need = (n, what) => { if (rest.length !== n) usageError(`${command} needs ${what}`); };
  switch (command) {
    case 'get':
      need(1, 'KEY');
      return { method: 'get', key: rest[0], args: [rest[0]], show: (value) => ({ value }) };
    case 'put':
      need(2, 'KEY VALUE');
      return { method: 'put', key: rest[0], args: rest, show: () => ({ value: rest[1] }) };
    case 'remove':
    case 'delete':
      need(1, 'KEY');
      return { method: 'remove', key: rest[0], args: [rest[0]], show: (existed) => ({ existed }) };
    case 'increment': {
      if (rest.length !== 1 && rest.length !== 2) usageError('increment needs KEY [AMOUNT]');
      const args = [rest[0]];
      if (rest.length === 2) {
        if (!/^-?\d+$/.test(rest[1])) usageError(`AMOUNT must be a whole number, not ${rest[1]}`);
        args.push(thrift.fromBigInt(BigInt(rest[1]))); // an i64, exactly: a Number would round it
      }
      return { method: 'increment', key: rest[0], args, show: (value) => ({ value: thrift.toBigInt(value).toString() }) };
    }
    case 'keys':
      need(0, 'no arguments');
      return { method: 'keys', args: [], show: (keys) => ({ keys }) };
    default:
      return usageError(`unknown command ${command}`);
  }
}

// The connection, and a way to fail every call still waiting when it breaks.
function openConnection(thrift, KV, host, port, timeoutMs) {
  const connection = thrift.createConnection(host, port, {
    transport: thrift.TFramedTransport, // the library's default is unframed: it must match the server
    protocol: thrift.TBinaryProtocol,
    connect_timeout: timeoutMs,
  });
  const waiting = new Set();
  const failAll = (message) => { for (const fail of waiting) fail(new Error(message)); waiting.clear(); };
  connection.on('error', (err) => failAll(`connection failed: ${err.message}`));
  connection.on('close', () => failAll('the server closed the connection'));
  return { connection, client: thrift.createClient(KV, connection), waiting };
}

function describe(err) {
  if (err && err.name && typeof err.message === 'string' && err.name !== 'Error') {
    const error = { exception: err.name, message: err.message };
    if (err.key !== undefined && err.key !== null) error.key = err.key;
    return error;
  }
  return { exception: 'TransportError', message: String(err && err.message ? err.message : err) };
}

function call(link, command, plan, timeoutMs) {
  return new Promise((resolve) => {
    const line = { call: command };
    if (plan.key !== undefined) line.key = plan.key;
    let done = false;
    const finish = (err, result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      link.waiting.delete(fail);
      if (err) line.error = describe(err);
      else Object.assign(line, plan.show(result));
      process.stdout.write(JSON.stringify(line) + '\n');
      resolve(line);
    };
    const fail = (err) => finish(err);
    const timer = setTimeout(() => finish(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
    link.waiting.add(fail);
    link.client[plan.method](...plan.args).then((result) => finish(null, result), (err) => finish(err));
  });
}

function explain(line) {
  process.stderr.write(`kv_thrift_client: ${line.call} ${JSON.stringify(line.key)} failed: ${line.error.exception}: ${line.error.message}\n`);
}

async function main() {
  const { host, port, command, rest, timeoutMs, gen } = parseArgs(process.argv.slice(2));
  const { thrift, KV } = loadModules(gen);
  const link = openConnection(thrift, KV, host, port, timeoutMs);
  let status = 0;
  try {
    if (command === 'demo') {
      if (rest.length) usageError('demo takes no arguments');
      const steps = [
        ['put', ['greeting', 'hello from Node.js over Thrift']],
        ['get', ['greeting']],
        ['increment', ['visits']],
        ['increment', ['visits', '41']],
        ['keys', []],
        ['remove', ['greeting']],
      ];
      for (const [name, args] of steps) {
        const line = await call(link, name, planCall(thrift, name, args), timeoutMs);
        if (line.error) { explain(line); status = 1; break; }
      }
      if (status === 0) { // the key is gone: this get must fail with the IDL's NotFound
        const line = await call(link, 'get', planCall(thrift, 'get', ['greeting']), timeoutMs);
        if (!line.error || line.error.exception !== 'NotFound') {
          if (line.error) explain(line);
          status = 1;
        }
      }
    } else {
      const line = await call(link, command, planCall(thrift, command, rest), timeoutMs);
      if (line.error) { explain(line); status = 1; }
    }
  } finally {
    link.connection.end(); // every call has had its answer, or has given up on it:
    link.connection.destroy(); // do not wait for a server that never closes its end
  }
  process.exitCode = status;
}

main().catch((err) => {
  process.stderr.write(`kv_thrift_client: ${err.stack || err}\n`);
  process.exitCode = 1;
});
