// Runs inside a fetch-phase sandbox, under the image's own node: listens on the sandbox's private
// loopback and relays each connection to the agent's egress proxy, whose Unix socket is the one
// way out of the sandbox. Then runs the fetch command with the proxy variables pointing here.
// Plain JavaScript on purpose: the image's node may be older than the agent's and strip no types.
// Usage: node egress-forwarder.mjs SOCKET PORT -- COMMAND...
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';

const [socketPath, portText, dashes, ...command] = process.argv.slice(2);
if (socketPath === undefined || dashes !== '--' || command.length === 0) {
  process.stderr.write('egress-forwarder: usage: SOCKET PORT -- COMMAND...\n');
  process.exit(2);
}
const server = createServer((client) => {
  const upstream = connect(socketPath);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
});
server.listen(Number(portText), '127.0.0.1', () => {
  const proxy = `http://127.0.0.1:${portText}`;
  const child = spawn(command[0], command.slice(1), {
    stdio: 'inherit',
    env: {
      ...process.env,
      HTTP_PROXY: proxy,
      http_proxy: proxy,
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
      npm_config_proxy: proxy,
      npm_config_https_proxy: proxy,
    },
  });
  child.on('error', (e) => {
    process.stderr.write(`egress-forwarder: cannot run ${command[0]}: ${e.message}\n`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15)));
});
