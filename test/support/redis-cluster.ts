/**
 * Throwaway redis-server processes for tests: a single server (to kill and
 * restart at will) and a 3-master Cluster, each on spare local ports, in a
 * temporary directory, with no persistence. Only processes started here are
 * ever stopped, by their own handles; the machine's shared Redis is never
 * touched.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Why redis-server cannot be started here, or undefined when it can. */
export async function redisServerMissing(): Promise<string | undefined> {
  try {
    await run('redis-server', ['--version'], { timeout: 5_000 });
    await run('redis-cli', ['--version'], { timeout: 5_000 });
    return undefined;
  } catch (err) {
    return `redis-server and redis-cli are needed on PATH (${(err as Error).message})`;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

const taken = new Set<number>();

/**
 * A port in 30000–39999 with nothing listening on it, nor on port + 10000
 * (where a Cluster node listens for its bus).
 */
export async function sparePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 30_000 + Math.floor(Math.random() * 10_000);
    if (taken.has(port)) continue;
    if ((await portIsFree(port)) && (await portIsFree(port + 10_000))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no spare port pair found in 30000-39999');
}

export function redisCli(port: number, ...args: string[]): Promise<string> {
  return run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    timeout: 10_000,
  }).then(({ stdout }) => stdout);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

// Killed synchronously if the test process exits without stopping them.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM, then SIGKILL); resolves once it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. */
  dispose(): Promise<void>;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    running.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const killed = await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]);
  if (!killed) {
    child.kill('SIGKILL');
    await exited;
  }
  running.delete(child);
}

/** Starts one redis-server on `port` in `dir`; resolves once it answers PING. */
async function spawnServer(port: number, dir: string, extra: string[] = []): Promise<ChildProcess> {
  const logfile = join(dir, `redis-${port}.log`);
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--logfile',
      logfile,
      ...extra,
    ],
    { stdio: 'ignore' },
  );
  running.add(child);
  try {
    await waitFor(
      `redis-server on port ${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
        return (await redisCli(port, 'ping')).trim() === 'PONG';
      },
      10_000,
    );
  } catch (err) {
    await stopProcess(child);
    let log = '';
    try {
      log = readFileSync(logfile, 'utf8').split('\n').slice(-10).join('\n');
    } catch {}
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  return child;
}

/** One standalone redis-server on a spare port. */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'satchel-redis-'));
  const port = await sparePort();
  let child: ChildProcess | undefined = await spawnServer(port, dir);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child) await stopProcess(child);
      child = undefined;
    },
    async restart() {
      if (child) await stopProcess(child);
      child = await spawnServer(port, dir);
    },
    async dispose() {
      if (child) await stopProcess(child);
      child = undefined;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  /** The masters, as ioredis `Cluster` startup nodes. */
  readonly nodes: { host: string; port: number }[];
  /** Stops every node (by the handles of the processes spawned) and removes the directory. */
  stop(): Promise<void>;
}

/**
 * A Cluster of `masters` nodes and no replicas, every slot assigned and
 * `cluster_state:ok` on each node before it resolves.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'satchel-redis-cluster-'));
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map(stopProcess));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < masters; i++) ports.push(await sparePort());
    for (const port of ports) {
      children.push(
        await spawnServer(port, dir, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '2000',
        ]),
      );
    }
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((port) => `127.0.0.1:${port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeout: 20_000 },
    );
    await waitFor(
      'cluster_state:ok on every node',
      async () => {
        const infos = await Promise.all(ports.map((port) => redisCli(port, 'cluster', 'info')));
        return infos.every(
          (info) =>
            info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${masters}`),
        );
      },
      20_000,
    );
    return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
