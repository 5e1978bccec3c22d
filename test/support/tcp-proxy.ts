/**
 * A TCP proxy a test controls, to take a service away from the code under
 * test without touching the service itself (the machine's Redis and
 * PostgreSQL are shared: never stop them). It listens on 127.0.0.1 at a
 * random port and forwards every connection to the target; `cut()` drops
 * every connection and makes new ones fail, `restore()` brings it back on the
 * same port.
 *
 * ```ts
 * const proxy = await TcpProxy.start({ port: 6379 });
 * const store = redisStore({ url: `redis://127.0.0.1:${proxy.port}` });
 * await proxy.cut();      // the store now sees Redis as gone
 * await proxy.restore();  // and back
 * await proxy.close();
 * ```
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * How the service goes away:
 * - `refuse`: connections are dropped and the port stops listening
 *   (ECONNREFUSED), as when the service's process is down;
 * - `reset`: connections are reset (RST) and new ones accepted then reset at
 *   once, as when a firewall or a crashing proxy rejects them;
 * - `blackhole`: nothing is answered any more, connections stay open, and new
 *   ones are accepted and never forwarded, as in a network partition (only
 *   timeouts notice).
 */
export type CutMode = 'refuse' | 'reset' | 'blackhole';

export interface ProxyTarget {
  host?: string;
  port: number;
}

export class TcpProxy {
  readonly #target: Required<ProxyTarget>;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #clients = new Set<Socket>();
  #port = 0;
  #state: 'up' | CutMode = 'up';
  #accepted = 0;
  #closed = false;

  private constructor(target: ProxyTarget) {
    this.#target = { host: target.host ?? '127.0.0.1', port: target.port };
    this.#server = createServer((client) => this.#accept(client));
    this.#server.on('error', () => {});
  }

  /** Starts a proxy to `target` on 127.0.0.1 at a random port. */
  static async start(target: ProxyTarget): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await proxy.#listen(0);
    return proxy;
  }

  /** The port clients connect to. It stays the same across cut and restore. */
  get port(): number {
    return this.#port;
  }

  /** 'up', or how it was cut. */
  get state(): 'up' | CutMode {
    return this.#state;
  }

  /** Connections accepted since the start. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections open right now (client side). */
  get open(): number {
    return this.#clients.size;
  }

  /** Takes the service away (see CutMode). Resolves once existing connections are dealt with. */
  async cut(mode: CutMode = 'refuse'): Promise<void> {
    if (this.#state !== 'up') throw new Error(`tcp-proxy: already cut (${this.#state})`);
    this.#state = mode;
    if (mode === 'blackhole') {
      // Existing connections stay open but nothing flows any more.
      for (const socket of this.#sockets) {
        socket.unpipe();
        socket.removeAllListeners('data');
        socket.on('data', () => {});
        socket.resume();
      }
      return;
    }
    for (const socket of [...this.#sockets]) {
      if (mode === 'reset') socket.resetAndDestroy();
      else socket.destroy();
    }
    this.#sockets.clear();
    if (mode === 'refuse')
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Brings the service back on the same port. Connections from the cut (blackholed ones) are dropped. */
  async restore(): Promise<void> {
    if (this.#state === 'up') return;
    const was = this.#state;
    this.#state = 'up';
    for (const socket of [...this.#sockets]) socket.destroy();
    this.#sockets.clear();
    if (was === 'refuse') await this.#listen(this.#port);
  }

  /** Stops the proxy and drops every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (this.#server.listening) {
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', onError);
        const address = this.#server.address();
        if (address && typeof address === 'object') this.#port = address.port;
        resolve();
      });
    });
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.#sockets.delete(socket));
  }

  #accept(client: Socket): void {
    this.#accepted++;
    this.#track(client);
    this.#clients.add(client);
    client.once('close', () => this.#clients.delete(client));
    if (this.#state === 'reset') {
      client.resetAndDestroy();
      return;
    }
    if (this.#state === 'blackhole') {
      client.on('data', () => {});
      return;
    }
    const upstream = connect({ host: this.#target.host, port: this.#target.port });
    this.#track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', drop);
    upstream.once('close', drop);
  }
}
