import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from '../../src/stores/redis.js';
import {
  type RedisCluster,
  redisServerMissing,
  startRedisCluster,
} from '../support/redis-cluster.js';
import { describeWithService } from '../support/services.js';
import { describeStore, newKey, newRecord } from './conformance.js';

const missing = await redisServerMissing();
const prefix = 'satchel-test:';

describeWithService('redis cluster', missing, () => {
  let cluster: RedisCluster | undefined;
  const closers: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  });

  afterAll(async () => {
    await Promise.all(closers.map((close) => close().catch(() => {})));
    await cluster?.stop();
  });

  function ioredisCluster(): Cluster {
    const client = new Cluster(cluster!.nodes, { redisOptions: { maxRetriesPerRequest: 1 } });
    client.on('error', () => {});
    closers.push(() => client.quit());
    return client;
  }

  async function nodeRedisCluster() {
    const client = createCluster({
      rootNodes: cluster!.nodes.map(({ host, port }) => ({ socket: { host, port } })),
    });
    client.on('error', () => {});
    await client.connect();
    closers.push(() => client.close());
    return client;
  }

  describeStore(
    'redis cluster (ioredis)',
    () => redisStore({ client: ioredisCluster(), prefix: `${prefix}ioredis:` }),
    {
      lock: true,
      owners: true,
      persistent: () => redisStore({ client: ioredisCluster(), prefix: `${prefix}ioredis:` }),
    },
  );

  describeStore(
    'redis cluster (node-redis)',
    async () => redisStore({ client: await nodeRedisCluster(), prefix: `${prefix}node-redis:` }),
    {
      lock: true,
      owners: true,
      persistent: async () =>
        redisStore({ client: await nodeRedisCluster(), prefix: `${prefix}node-redis:` }),
    },
  );

  describe('redis cluster store', () => {
    it("keeps a session's record and lock in one slot, and spreads sessions over every master", async () => {
      const client = ioredisCluster();
      const store = redisStore({ client, prefix: `${prefix}slots:` });
      const keys = Array.from({ length: 30 }, newKey);
      for (const key of keys) {
        await store.create(key, newRecord());
        expect(await store.lock?.(key, 'token', 10_000)).toBe(true);
        const [recordSlot, lockSlot] = await Promise.all([
          client.cluster('KEYSLOT', `${prefix}slots:{${key}}`),
          client.cluster('KEYSLOT', `${prefix}slots:{${key}}:lock`),
        ]);
        expect(lockSlot).toBe(recordSlot);
      }

      // KEYS is fine on this throwaway cluster.
      const perMaster = await Promise.all(
        client.nodes('master').map((node) => node.keys(`${prefix}slots:{*`)),
      );
      expect(perMaster).toHaveLength(3);
      for (const keysHere of perMaster) expect(keysHere.length).toBeGreaterThan(0);
      expect(perMaster.flat()).toHaveLength(60);

      // Every master is scanned, even by a client that has not loaded the slot map yet.
      const fresh = redisStore({ client: ioredisCluster(), prefix: `${prefix}slots:` });
      expect(await fresh.clearExpired(Date.now() + 24 * 3_600_000)).toBe(30);
      for (const key of keys) expect(await store.get(key)).toBeUndefined();
      await fresh.close();
      await store.close();
    });

    for (const [driver, open] of [
      ['ioredis', async () => ioredisCluster()],
      ['node-redis', nodeRedisCluster],
    ] as const) {
      it(`lists and ends an owner's sessions spread over all three masters (${driver})`, async () => {
        const admin = ioredisCluster();
        const where = `${prefix}owners-${driver}:`;
        const store = redisStore({ client: await open(), prefix: where });
        const owner = 'ann {of} ✓';
        const keys = Array.from({ length: 30 }, newKey);
        await Promise.all(keys.map((key) => store.create(key, newRecord({ owner }))));
        await store.create(newKey(), newRecord({ owner: 'bob' }));

        // The records sit on every master; the owner's two index keys share one slot.
        const masters = admin.nodes('master');
        const perMaster = await Promise.all(masters.map((node) => node.keys(`${where}{*}`)));
        for (const keysHere of perMaster) expect(keysHere.length).toBeGreaterThan(0);
        const indexKeys = (
          await Promise.all(masters.map((node) => node.keys(`${where}owner:*`)))
        ).flat();
        // Two per owner, ann's and bob's, each pair in one slot of its own.
        expect(indexKeys).toHaveLength(4);
        const slotsOf = new Map<string, Set<number>>();
        for (const key of indexKeys) {
          const base = key.replace(/:versions$/, '');
          const slots = slotsOf.get(base) ?? new Set<number>();
          slots.add(Number(await admin.cluster('KEYSLOT', key)));
          slotsOf.set(base, slots);
        }
        expect([...slotsOf.values()].map((slots) => slots.size)).toEqual([1, 1]);

        const listed = await store.listByOwner!(owner);
        expect(listed.map((row) => row.key).sort()).toEqual([...keys].sort());
        for (const row of listed) expect(row.record.owner).toBe(owner);

        expect(await store.destroyByOwner!(owner, keys[0])).toBe(29);
        expect((await store.listByOwner!(owner)).map((row) => row.key)).toEqual([keys[0]]);
        for (const key of keys.slice(1)) expect(await store.get(key)).toBeUndefined();
        expect(await store.listByOwner!('bob')).toHaveLength(1);
        await store.close();
      });
    }
  });
});
