/**
 * The opt-in per-session lock (`lock: true`), on every store that has one:
 * strict serialization under load across two servers, a clear 503 when the
 * lock cannot be had, no lock left behind by a handler that throws or a
 * client that leaves, and expiry of a lock whose process was SIGKILLed.
 */
import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionRequest } from '../../src/adapters/node.js';
import { createSessions, LockTimeoutError, type Sessions, storeKey } from '../../src/index.js';
import { memoryStore } from '../../src/stores/memory.js';
import { type App, routes, startApp } from './lib/app.js';
import { startChild } from './lib/child.js';
import { size, STRESS_FULL } from './lib/env.js';
import { Browser, Client } from './lib/http.js';
import { describeUnavailable } from './lib/skip.js';
import { allKits, type KitEntry, type StoreKit } from './lib/stores.js';

const REQUESTS = size('LOCK_REQUESTS', 200, 1000);
const LOCK_TTL = 800;
const TIMEOUT = STRESS_FULL ? 600_000 : 60_000;
const BUSY = 'Service Unavailable: this session is busy with another request; please try again.\n';

/** A request carrying only the session cookie, for the manager API. */
const cookieRequest = (id: string) => ({
  header: (name: string) => (name === 'cookie' ? `sessionid=${id}` : undefined),
  encrypted: false,
});

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const quiet = { warn: () => {}, error: () => {} };

/** A promise and its resolver, to hold a handler until the test lets it go. */
function latch() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

function describeKit(entry: KitEntry): void {
  describe(`${entry.name} store`, () => {
    let kit: StoreKit;
    /** Handlers inside right now, across both servers, and the most at once. */
    const inside = { now: 0, max: 0 };
    let holding = latch();
    let entered = latch();
    const managers: Sessions<any>[] = [];
    const apps: App[] = [];
    const clients: Client[] = [];

    const table = routes({
      // A read-modify-write that is only safe under the lock: read, yield, write.
      '/rmw': async (req, res: ServerResponse) => {
        inside.now++;
        inside.max = Math.max(inside.max, inside.now);
        const n = (req.session.get('n') as number | undefined) ?? 0;
        await sleep(Math.random() < 0.5 ? 0 : 1);
        req.session.set('n', n + 1);
        inside.now--;
        res.end(String(n + 1));
      },
      '/hold': async (req: SessionRequest<any>, res: ServerResponse) => {
        req.session.get('n');
        entered.open();
        await holding.opened;
        res.end('held');
      },
      '/throw': () => {
        throw new Error('handler failed');
      },
      '/throw-async': async () => {
        await sleep(1);
        throw new Error('handler failed later');
      },
    });

    beforeAll(async () => {
      kit = await entry.make();
      for (const lockTimeout of [60_000, 300]) {
        const sessions = createSessions({
          store: await kit.open(),
          lock: true,
          lockTimeout,
          logger: quiet,
        });
        managers.push(sessions);
        const app = await startApp(sessions, table);
        apps.push(app);
        clients.push(new Client(app.base, 64));
      }
    });

    afterAll(async () => {
      for (const client of clients) client.close();
      for (const app of apps) await app.close();
      for (const sessions of managers) await sessions.close();
      await kit?.cleanup();
    });

    async function newSession(): Promise<string> {
      const browser = new Browser(clients[0]!);
      const reply = await browser.fetch('/set?key=n&value=0', { method: 'POST' });
      expect(reply.status).toBe(200);
      return browser.cookie!;
    }

    /** Server 0 waits up to 60 s for the lock; server 1 gives up after 300 ms. */
    const request = (server: 0 | 1, path: string, id: string) =>
      clients[server]!.request(path, { method: 'POST', cookie: `sessionid=${id}` });

    it(
      `lets one handler at a time in when ${REQUESTS} requests of one session arrive at once`,
      async () => {
        const browser = new Browser(clients[0]!);
        await browser.fetch('/rmw', { method: 'POST' });
        const id = browser.cookie!;
        inside.max = 0;
        // Both servers share the lock through the store; both may wait long enough.
        const slow = createSessions({
          store: await kit.open(),
          lock: true,
          lockTimeout: 60_000,
          logger: quiet,
        });
        const second = await startApp(slow, table);
        const secondClient = new Client(second.base, 64);
        try {
          const started = performance.now();
          const replies = await Promise.all(
            range(REQUESTS).map((i) =>
              (i % 2 === 0 ? clients[0]! : secondClient).request('/rmw', {
                method: 'POST',
                cookie: `sessionid=${id}`,
              }),
            ),
          );
          const ms = performance.now() - started;
          expect(replies.filter((r) => r.status !== 200).map((r) => r.body)).toEqual([]);
          expect(inside.max).toBe(1);
          // A plain get-then-set loses nothing under the lock.
          const final = await clients[0]!.request('/get?key=n', { cookie: `sessionid=${id}` });
          expect(JSON.parse(final.body)).toBe(REQUESTS + 1);
          console.info(
            `[stress] ${kit.name}: lock serialized ${REQUESTS} concurrent requests over 2 servers in ${Math.round(ms)} ms; at most ${inside.max} handler inside`,
          );
        } finally {
          secondClient.close();
          await second.close();
          await slow.close();
        }
      },
      TIMEOUT,
    );

    it('answers 503 LockTimeoutError with a plain message when the lock cannot be had', async () => {
      const id = await newSession();
      holding = latch();
      entered = latch();
      const held = request(0, '/hold', id);
      try {
        await entered.opened;
        const started = performance.now();
        const busy = await request(1, '/get?key=n', id);
        const waited = performance.now() - started;
        expect(busy.status).toBe(503);
        expect(busy.body).toBe(BUSY);
        expect(busy.headers['content-type']).toMatch(/^text\/plain/);
        // lockTimeout is 300 ms; the manager gives up when its next poll would
        // pass the deadline, so up to one poll interval (100 ms) early.
        expect(waited).toBeGreaterThanOrEqual(150);
        expect(waited).toBeLessThan(5_000);
        // The manager API says the same with a typed error.
        const direct = createSessions({
          store: await kit.open(),
          lock: true,
          lockTimeout: 100,
          logger: quiet,
        });
        try {
          await expect(direct.load(cookieRequest(id))).rejects.toBeInstanceOf(LockTimeoutError);
        } finally {
          await direct.close();
        }
      } finally {
        holding.open();
      }
      expect((await held).status).toBe(200);
      expect((await request(1, '/get?key=n', id)).status).toBe(200);
    });

    it('leaves no lock behind when a handler throws or the client goes away', async () => {
      const id = await newSession();
      const outcomes: number[] = [];
      for (const path of ['/throw', '/throw-async']) {
        for (const server of [0, 1] as const) {
          outcomes.push((await request(server, path, id)).status);
          // Server 1 gives up after 300 ms: answering 200 means the lock was free.
          outcomes.push((await request(1, '/get?key=n', id)).status);
        }
      }
      expect(outcomes).toEqual([500, 200, 500, 200, 500, 200, 500, 200]);

      // A client that disconnects while its handler holds the lock.
      holding = latch();
      entered = latch();
      const abort = new AbortController();
      const abandoned = clients[0]!.request('/hold', {
        method: 'POST',
        cookie: `sessionid=${id}`,
        signal: abort.signal,
      });
      await entered.opened;
      abort.abort();
      await expect(abandoned).rejects.toThrow();
      holding.open();
      await sleep(20);
      expect((await request(1, '/get?key=n', id)).status).toBe(200);

      // And the store itself holds no lock on the session.
      const store = await kit.open();
      try {
        if (store.lock) {
          expect(await store.lock(storeKey(id), 'probe', 1_000)).toBe(true);
          await store.unlock!(storeKey(id), 'probe');
        }
      } finally {
        await store.close();
      }
    });

    // The embedded stores in every run; the server stores in the full run.
    if (entry.shared === 'embedded' || (entry.shared === 'server' && STRESS_FULL)) {
      it(
        `gives the lock of a SIGKILLed process to another after lockTtl (${LOCK_TTL} ms)`,
        async () => {
          const id = await newSession();
          const child = startChild('test/stress/lock-holder.ts', {
            spec: kit.spec,
            cookie: id,
            lockTtl: LOCK_TTL,
          });
          // When the child asked for the lock: it expires lockTtl after that, at the earliest.
          let lockedAt: number;
          try {
            lockedAt = Number((await child.waitFor(/^locked (\d+)$/))[1]);
          } finally {
            child.kill('SIGKILL');
          }
          expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
          const waiter = createSessions({
            store: await kit.open(),
            lock: true,
            lockTimeout: LOCK_TTL * 4,
            lockTtl: LOCK_TTL,
            logger: quiet,
          });
          try {
            const req = cookieRequest(id);
            // Still held by the dead process: a short wait times out.
            if (Date.now() - lockedAt < LOCK_TTL - 300) {
              const impatient = createSessions({
                store: await kit.open(),
                lock: true,
                lockTimeout: 100,
                logger: quiet,
              });
              await expect(impatient.load(req)).rejects.toBeInstanceOf(LockTimeoutError);
              await impatient.close();
            }
            const session = await waiter.load(req);
            const after = Date.now() - lockedAt;
            expect(session.isNew).toBe(false);
            expect(after).toBeGreaterThanOrEqual(LOCK_TTL - 5);
            expect(after).toBeLessThan(LOCK_TTL + 1_500);
            await waiter.commit(session, 200);
            console.info(
              `[stress] ${kit.name}: lock of a SIGKILLed process taken over ${after} ms after the dead process asked for it (lockTtl ${LOCK_TTL} ms)`,
            );
          } finally {
            await waiter.close();
          }
        },
        TIMEOUT,
      );
    }
  });
}

describe('lock and a client that goes away', () => {
  // A client that leaves mid-request must not let the next request of its
  // session in while the first handler still runs (the lock is released when
  // that handler answers or settles, not on the socket's close).
  it('keeps the next request out until the handler of a client that left has finished', async () => {
    const inside = { now: 0, max: 0 };
    const hold = latch();
    const entered = latch();
    const enter = async (res: ServerResponse, wait: Promise<void>) => {
      inside.now++;
      inside.max = Math.max(inside.max, inside.now);
      await wait;
      inside.now--;
      res.end('done');
    };
    const sessions = createSessions({ store: memoryStore(), lock: true, logger: quiet });
    const app = await startApp(
      sessions,
      routes({
        '/hold': (req, res) => {
          req.session.set('side-effect', 'started');
          entered.open();
          return enter(res, hold.opened);
        },
        '/quick': (req, res) => {
          req.session.get('n');
          return enter(res, sleep(5));
        },
      }),
    );
    const client = new Client(app.base, 8);
    try {
      const browser = new Browser(client);
      await browser.fetch('/set?key=n&value=1', { method: 'POST' });
      const abort = new AbortController();
      const left = browser.fetch('/hold', { method: 'POST', signal: abort.signal });
      await entered.opened;
      abort.abort();
      await left.catch(() => {});
      await sleep(20);
      const quick = browser.fetch('/quick', { method: 'POST' });
      await sleep(50);
      hold.open();
      expect((await quick).status).toBe(200);
      expect(inside.max).toBe(1);
    } finally {
      hold.open();
      client.close();
      await app.close();
      await sessions.close();
    }
  });
});

for (const entry of await allKits()) {
  if ('entry' in entry) describeKit(entry.entry);
  else describeUnavailable(`${entry.name} store`, entry.gate);
}
