// Real proxies for the browser tests: Debian's nginx, started on a free loopback port
// with one of the configurations in tests/proxies/, in front of a pushwire the test
// started. Everything nginx writes lives in a temporary prefix, removed at stop.
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const CONFIG_DIR = path.resolve(__dirname, '..', 'proxies');
/** Upper bound for nginx to start listening or to stop. */
const START_MS = 10000;

/** A loopback port nothing listens on now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port`, or fails after START_MS. */
async function waitListening(port) {
  const deadline = Date.now() + START_MS;
  while (Date.now() < deadline) {
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nginx did not listen on ${port} within ${START_MS} ms`);
}

/** A certificate and key for 127.0.0.1, valid for a day, made with openssl. */
function makeCertificate(dir) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
}

/**
 * Starts nginx with `tests/proxies/<name>.conf` in front of `backendPort`. Resolves to
 * `{ url, port, stop() }`; `url` is https:// for the TLS configuration.
 */
async function startProxy(name, backendPort) {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), `pushwire-proxy-${name}-`));
  // nginx's workers run as an unprivileged user when the tests run as root.
  fs.chmodSync(prefix, 0o755);
  fs.mkdirSync(path.join(prefix, 'tmp'), { mode: 0o777 });
  fs.chmodSync(path.join(prefix, 'tmp'), 0o777);
  const port = await freePort();
  const tls = name === 'http2';
  if (tls) makeCertificate(prefix);
  const config = fs
    .readFileSync(path.join(CONFIG_DIR, `${name}.conf`), 'utf8')
    .replaceAll('{{LISTEN}}', `127.0.0.1:${port}`)
    .replaceAll('{{BACKEND}}', `127.0.0.1:${backendPort}`)
    .replaceAll('{{PREFIX}}', prefix)
    .replaceAll('{{CONFIG_DIR}}', CONFIG_DIR);
  const configPath = path.join(prefix, 'nginx.conf');
  fs.writeFileSync(configPath, config);
  const args = ['-p', prefix, '-c', configPath, '-e', path.join(prefix, 'error.log')];
  const child = spawn('nginx', [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await Promise.race([
      waitListening(port),
      exited.then((code) => {
        throw new Error(`nginx (${name}) exited with ${code}: ${stderr}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/`,
    port,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), START_MS);
        await exited;
        clearTimeout(killer);
      }
      fs.rmSync(prefix, { recursive: true, force: true });
    },
  };
}

module.exports = { startProxy };
