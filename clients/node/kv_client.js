#!/usr/bin/env node
// RPC Lab: a gRPC client for the key-value service, written in JavaScript.
//
// It reads the same protos/kv.proto as the Python server, at run time
// (@grpc/proto-loader: nothing is generated), and calls the server over HTTP/2
// (@grpc/grpc-js: gRPC in pure JavaScript). Two languages, one interface file.
//
//   node kv_client.js 127.0.0.1:50051 put greeting hello
//   node kv_client.js 127.0.0.1:50051 get greeting
//   node kv_client.js 127.0.0.1:50051 increment visits 5
//   node kv_client.js 127.0.0.1:50051 delete greeting
//   node kv_client.js 127.0.0.1:50051 demo          (a scripted tour of all four calls)
//   node kv_client.js --repeat 2 127.0.0.1:50051 get greeting   (the same call twice, one channel)
//
// Each call prints one JSON line on stdout, e.g. {"call":"get","key":"greeting","value":"hello"}.
// An int64 (Increment's value) prints as a string: a JavaScript number is a
// double and cannot hold every int64 exactly.
// Exit status: 0 on success; 1 when a call fails (the JSON line then holds
// "error": {"code": "NOT_FOUND", "details": ...}, and stderr says it in words);
// 2 for a usage error. Every call has a deadline (--deadline-ms, default 5000), set
// when the call is made: the first call on a channel also waits for the connection to open,
// so it spends part of its deadline on that; --repeat shows the difference.
'use strict';

const path = require('path');

const USAGE = `usage: node kv_client.js [--deadline-ms N] [--repeat N] HOST:PORT COMMAND [ARGS...] [-- ARGS...]
--deadline-ms N   each call's deadline, N ms after the call is made (default 5000)
--repeat N        make the call N times (1-100) on the same channel, each with its own deadline
Every argument after -- is a key or a value, even one that starts with a dash
(node kv_client.js 127.0.0.1:50051 put -- -h --help stores the value "--help" at the key "-h").
commands:
  get KEY                the value at KEY
  put KEY VALUE          store VALUE at KEY
  delete KEY             remove KEY
  increment KEY [AMOUNT] add AMOUNT (default 1) to the integer at KEY
  demo                   put, get, increment, delete, then a get that fails with NOT_FOUND`;

function usageError(message) {
  process.stderr.write(`kv_client: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function loadModules() {
  try {
    return { grpc: require('@grpc/grpc-js'), protoLoader: require('@grpc/proto-loader') };
  } catch (err) {
    process.stderr.write(
      `kv_client: ${err.message}\nInstall the client's packages first: run \`npm ci\` in ${__dirname}\n`);
    process.exit(2);
  }
}

function loadService(protoLoader, grpc) {
  // The repository's protos/ folder, or RPCLAB_PROTOS (as rpclab.grpcstack.protos uses it).
  const folder = process.env.RPCLAB_PROTOS || path.join(__dirname, '..', '..', 'protos');
  const file = path.join(folder, 'kv.proto');
  let definition;
  try {
    definition = protoLoader.loadSync(file, {
      keepCase: true, // field names as written in kv.proto (request_id, not requestId)
      longs: String, // int64 -> string, exactly
      enums: String,
      defaults: true,
      oneofs: true,
    });
  } catch (err) {
    process.stderr.write(`kv_client: cannot load ${file}: ${err.message}\n`);
    process.exit(2);
  }
  return grpc.loadPackageDefinition(definition).rpclab.kv.KV;
}

function parseArgs(argv) {
  const args = [];
  let deadlineMs = 5000;
  let repeat = 1;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') { // the rest are keys and values, whatever they look like
      args.push(...argv.slice(i + 1));
      break;
    } else if (argv[i] === '--deadline-ms') {
      deadlineMs = Number(argv[++i]);
      if (!Number.isInteger(deadlineMs) || deadlineMs <= 0) usageError('--deadline-ms needs a positive whole number');
    } else if (argv[i] === '--repeat') {
      repeat = Number(argv[++i]);
      if (!Number.isInteger(repeat) || repeat < 1 || repeat > 100) usageError('--repeat needs a whole number from 1 to 100');
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else {
      args.push(argv[i]);
    }
  }
  if (args.length < 2) usageError('expected an address and a command');
  const [address, command, ...rest] = args;
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d+$/.test(address)) usageError(`address must be HOST:PORT, not ${address}`);
  if (command === 'demo' && repeat !== 1) usageError('demo takes no --repeat');
  return { address, command, rest, deadlineMs, repeat };
}

// One call: [request for the stub, method name, how to show the reply].
function planCall(command, rest) {
  const need = (n, what) => { if (rest.length !== n) usageError(`${command} needs ${what}`); };
  switch (command) {
    case 'get':
      need(1, 'KEY');
      return { method: 'Get', request: { key: rest[0] }, show: (r) => ({ value: r.value }) };
    case 'put':
      need(2, 'KEY VALUE');
      return { method: 'Put', request: { key: rest[0], value: rest[1] }, show: () => ({ value: rest[1] }) };
    case 'delete':
      need(1, 'KEY');
      return { method: 'Delete', request: { key: rest[0] }, show: (r) => ({ existed: r.existed }) };
    case 'increment': {
      if (rest.length !== 1 && rest.length !== 2) usageError('increment needs KEY [AMOUNT]');
      const request = { key: rest[0] };
      if (rest.length === 2) {
        if (!/^-?\d+$/.test(rest[1])) usageError(`AMOUNT must be a whole number, not ${rest[1]}`);
        request.amount = rest[1]; // a string: int64 does not fit a JavaScript number
      }
      return { method: 'Increment', request, show: (r) => ({ value: r.value }) };
    }
    default:
      return usageError(`unknown command ${command}`);
  }
}

function statusName(grpc, code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);
}

function call(grpc, client, command, plan, deadlineMs) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + deadlineMs);
    client[plan.method](plan.request, { deadline }, (err, reply) => {
      const line = { call: command, key: plan.request.key };
      if (err) {
        line.error = { code: statusName(grpc, err.code), details: err.details };
      } else {
        Object.assign(line, plan.show(reply));
      }
      process.stdout.write(JSON.stringify(line) + '\n');
      resolve(line);
    });
  });
}

function explain(line) {
  process.stderr.write(`kv_client: ${line.call} ${JSON.stringify(line.key)} failed: ${line.error.code}: ${line.error.details}\n`);
}

async function main() {
  const { address, command, rest, deadlineMs, repeat } = parseArgs(process.argv.slice(2));
  const { grpc, protoLoader } = loadModules();
  const KV = loadService(protoLoader, grpc);
  const client = new KV(address, grpc.credentials.createInsecure());
  let status = 0;
  try {
    if (command === 'demo') {
      if (rest.length) usageError('demo takes no arguments');
      const steps = [
        ['put', ['greeting', 'hello from Node.js']],
        ['get', ['greeting']],
        ['increment', ['visits']],
        ['increment', ['visits', '41']],
        ['delete', ['greeting']],
      ];
      for (const [name, args] of steps) {
        const line = await call(grpc, client, name, planCall(name, args), deadlineMs);
        if (line.error) { explain(line); status = 1; break; }
      }
      if (status === 0) { // the key is gone: this get must fail with NOT_FOUND
        const line = await call(grpc, client, 'get', planCall('get', ['greeting']), deadlineMs);
        if (!line.error || line.error.code !== 'NOT_FOUND') {
          if (line.error) explain(line);
          status = 1;
        }
      }
    } else {
      const plan = planCall(command, rest);
      for (let n = 0; n < repeat; n++) {
        const line = await call(grpc, client, command, plan, deadlineMs);
        if (line.error) { explain(line); status = 1; break; }
      }
    }
  } finally {
    client.close();
  }
  process.exitCode = status;
}

main().catch((err) => {
  process.stderr.write(`kv_client: ${err.stack || err}\n`);
  process.exitCode = 1;
});
