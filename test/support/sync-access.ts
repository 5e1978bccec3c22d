import type { SessionStore } from '../../src/store.js';

/**
 * `store` as a store over the network looks to the core: without the
 * synchronous twins of `get` and `update`, so every store call is awaited and
 * the commits of one session queue behind the write in flight.
 */
export function asyncOnly(store: SessionStore): SessionStore {
  return new Proxy(store, {
    get: (target, name, receiver) =>
      name === 'sync' ? undefined : Reflect.get(target, name, receiver),
    has: (target, name) => name !== 'sync' && Reflect.has(target, name),
  });
}

/**
 * `store` with `get` and `update` answered by its synchronous twins (wrapped
 * in a promise), so the conformance suite holds the twins to the contract
 * the asynchronous methods are held to. The view itself offers no `sync`.
 */
export function viaSync(store: SessionStore): SessionStore {
  const sync = store.sync;
  if (!sync) throw new Error(`${store.name} store has no synchronous access`);
  return new Proxy(store, {
    get(target, name, receiver) {
      if (name === 'sync') return undefined;
      if (name === 'get') return async (key: string) => sync.get(key);
      if (name === 'update') {
        return async (...args: Parameters<typeof sync.update>) => sync.update(...args);
      }
      return Reflect.get(target, name, receiver);
    },
    has: (target, name) => name !== 'sync' && Reflect.has(target, name),
  });
}
