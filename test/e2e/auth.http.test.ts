/**
 * The demo's login, "Your devices" page and logout over HTTP, against the app
 * running as its own process on a temporary SQLite database.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeKey } from '../../src/index.js';
import {
  type AppProcess,
  cartOf,
  freePort,
  startServer,
  stopAll,
  uniqueName,
  Visitor,
} from './harness.js';

let dir: string;
let app: AppProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'satchel-auth-http-'));
  app = await startServer({
    PORT: String(await freePort()),
    SATCHEL_STORE: 'sqlite',
    SATCHEL_SQLITE_PATH: join(dir, 'sessions.db'),
  });
});

afterAll(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface LoginOptions {
  username?: string;
  password?: string;
  next?: string;
  userAgent?: string;
}

/** Fills in and posts the login form, as a browser without JavaScript does. */
async function login(visitor: Visitor, options: LoginOptions = {}): Promise<Response> {
  const form: Record<string, string> = {
    csrf: await visitor.csrf('/login'),
    username: options.username ?? 'demo',
    password: options.password ?? 'demo-password',
  };
  if (options.next !== undefined) form.next = options.next;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (options.userAgent !== undefined) headers['user-agent'] = options.userAgent;
  return visitor.request('/login', {
    method: 'POST',
    headers,
    body: new URLSearchParams(form).toString(),
  });
}

/** A visitor signed in as demo from a device named `userAgent`. */
async function signedIn(userAgent = uniqueName('device')): Promise<Visitor> {
  const visitor = new Visitor(app.url);
  const res = await login(visitor, { userAgent });
  expect(res.status).toBe(303);
  return visitor;
}

interface DeviceRow {
  /** The device's name as shown, e.g. "Chrome on Linux". */
  name: string;
  /** The raw User-Agent, shown on hover (the title attribute). */
  userAgent: string;
  current: boolean;
  /** The handle in the row's "sign out this device" form; none for this device. */
  handle: string | undefined;
}

/** The rows of the devices page. */
function devicesOf(html: string): DeviceRow[] {
  return [...html.matchAll(/<tr class="device( current)?">([\s\S]*?)<\/tr>/g)].map((m) => ({
    current: m[1] !== undefined,
    name: /class="ua" title="[^"]*">([^<]*)/.exec(m[2]!)![1]!.trim(),
    userAgent: decode(/class="ua" title="([^"]*)"/.exec(m[2]!)![1]!),
    handle: /name="handle" value="([^"]+)"/.exec(m[2]!)?.[1],
  }));
}

/** The few entities nunjucks writes, decoded. */
const decode = (text: string) =>
  text
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');

const signedInAs = (html: string) =>
  /<span id="signed-in">Signed in as <strong>([^<]*)</.exec(html)?.[1];
const hasLoginLink = (html: string) => html.includes('id="login-link"');

describe('logging in', () => {
  it('answers a wrong password or an unknown user with 401, the form and a message', async () => {
    const visitor = new Visitor(app.url);
    for (const options of [{ password: 'wrong' }, { username: 'mallory' }, { password: '' }]) {
      const res = await login(visitor, options);
      expect(res.status, JSON.stringify(options)).toBe(401);
      const html = await res.text();
      expect(html).toContain('Wrong username or password.');
      expect(html).toContain('<form method="post" action="/login"');
      expect(html).toContain(`name="username" value="${options.username ?? 'demo'}"`);
      expect(signedInAs(html)).toBeUndefined();
    }
    expect((await visitor.request('/devices')).status).toBe(303);
  });

  it('refuses a login form without its CSRF token', async () => {
    const visitor = new Visitor(app.url);
    await visitor.csrf('/login');
    const res = await visitor.post('/login', { username: 'demo', password: 'demo-password' });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('Form expired');
    expect(hasLoginLink((await visitor.page('/')).html)).toBe(true);
  });

  it('changes the session ID at login and keeps the anonymous cart; the old ID is worthless', async () => {
    const visitor = new Visitor(app.url);
    await visitor.page('/add_to_cart/rubber-duck/');
    const anonymous = visitor.cookie;
    expect(anonymous).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const res = await login(visitor, { next: '/cart/' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/cart/');
    expect(visitor.cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(visitor.cookie).not.toBe(anonymous);

    const { html } = await visitor.page('/cart/');
    expect(signedInAs(html)).toBe('demo');
    expect(html).toContain('>Signed in as demo</div>');
    expect(cartOf(html)).toEqual({ 'rubber-duck': 1 });

    // Whoever held the ID from before the login holds nothing now.
    const before = new Visitor(app.url);
    before.cookie = anonymous;
    const stale = await before.page('/cart/');
    expect(hasLoginLink(stale.html)).toBe(true);
    expect(cartOf(stale.html)).toEqual({});
  });

  it('leads only to local pages after a login', async () => {
    for (const [next, location] of [
      ['/devices', '/devices'],
      ['https://evil.example/', '/'],
      ['//evil.example', '/'],
    ]) {
      const res = await login(new Visitor(app.url), { next });
      expect(res.headers.get('location'), next).toBe(location);
    }
  });
});

describe('your devices', () => {
  it('needs a login: the page and its forms redirect to the login page', async () => {
    const visitor = new Visitor(app.url);
    await visitor.page('/');
    for (const res of [
      await visitor.request('/devices'),
      await visitor.post('/devices/revoke', { handle: 'x'.repeat(43) }),
      await visitor.post('/devices/revoke-others', {}),
    ]) {
      expect(res.status).toBe(303);
      expect(res.headers.get('location')).toBe('/login?next=%2Fdevices');
    }
    const form = await visitor.page('/login?next=%2Fdevices');
    expect(form.html).toContain('name="next" value="/devices"');
  });

  it('lists the user’s sessions, marks this one, and signs another out by handle', async () => {
    const laptopName = uniqueName('laptop');
    const phoneName = uniqueName('phone');
    const laptop = await signedIn(laptopName);
    const phone = await signedIn(phoneName);
    await phone.page('/add_to_cart/coffee-mug/');

    const { status, html } = await laptop.page('/devices');
    expect(status).toBe(200);
    const rows = devicesOf(html);
    // A User-Agent no parser knows is shown as it is.
    expect(rows.find((r) => r.name === laptopName)).toEqual({
      name: laptopName,
      userAgent: laptopName,
      current: true,
      handle: undefined,
    });
    const phoneRow = rows.find((r) => r.name === phoneName)!;
    expect(phoneRow).toMatchObject({ current: false, handle: expect.stringMatching(/^.{43}$/) });
    expect(rows.filter((r) => r.current)).toHaveLength(1);
    // Handles, never session IDs.
    expect(html).not.toContain(laptop.cookie);
    expect(html).not.toContain(phone.cookie);
    expect(html).toMatch(
      /<time datetime="\d{4}-\d\d-\d\dT[^"]+"><span>\d{4}-\d\d-\d\d<\/span> <span>\d\d:\d\d</,
    );

    const res = await laptop.post('/devices/revoke', {
      csrf: await laptop.csrf('/devices'),
      handle: phoneRow.handle!,
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/devices');
    const after = await laptop.page('/devices');
    expect(after.html).toContain(`Signed out ${phoneName}`);
    expect(devicesOf(after.html).map((r) => r.name)).not.toContain(phoneName);

    const phonePage = await phone.page('/cart/');
    expect(hasLoginLink(phonePage.html)).toBe(true);
    expect(cartOf(phonePage.html)).toEqual({});
  });

  it('names devices by browser and system, with the raw User-Agent on hover', async () => {
    const agents = {
      'Chrome on Linux':
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      'Safari on iOS':
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
      'Firefox on Windows':
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
      // Quotes and angle brackets stay text, in the name and in the attribute.
      'x"><script>alert(1)</script>': 'x"><script>alert(1)</script>',
    };
    const me = await signedIn();
    for (const userAgent of Object.values(agents)) await signedIn(userAgent);
    const { html } = await me.page('/devices');
    expect(html).not.toContain('<script>alert(1)');
    const rows = devicesOf(html);
    for (const [name, userAgent] of Object.entries(agents)) {
      expect(rows.map((r) => ({ name: decode(r.name), userAgent: r.userAgent }))).toContainEqual({
        name,
        userAgent,
      });
    }
  });

  it('refuses with 403 to revoke a handle that is not one of the user’s sessions, and revokes nothing', async () => {
    const stranger = new Visitor(app.url);
    await stranger.page('/add_to_cart/sticker-pack/');
    // The stranger's real handle, as the store keys it.
    const strangersHandle = storeKey(stranger.cookie!);
    const user = await signedIn();
    const csrf = await user.csrf('/devices');

    for (const handle of [strangersHandle, 'A'.repeat(43), '../../etc/passwd', '']) {
      const res = await user.post('/devices/revoke', { csrf, handle });
      expect(res.status, handle).toBe(403);
      expect(await res.text()).toContain('Not one of your devices');
    }
    // Without the token, not even a look.
    expect((await user.post('/devices/revoke', { handle: strangersHandle })).status).toBe(403);

    expect(cartOf((await stranger.page('/cart/')).html)).toEqual({ 'sticker-pack': 1 });
    expect(signedInAs((await user.page('/cart/')).html)).toBe('demo');
  });

  it('signs out everywhere else, keeping this session and its cart', async () => {
    const keep = await signedIn();
    const others = [await signedIn(), await signedIn()];
    await keep.page('/add_to_cart/awesome-item/');
    for (const other of others) await other.page('/add_to_cart/rubber-duck/');

    const res = await keep.post('/devices/revoke-others', { csrf: await keep.csrf('/devices') });
    expect(res.status).toBe(303);
    const { html } = await keep.page('/devices');
    // Earlier cases left demo signed in elsewhere too: at least these two went.
    const count = Number(/Signed out (\d+) other devices/.exec(html)?.[1]);
    expect(count).toBeGreaterThanOrEqual(2);
    expect(devicesOf(html)).toEqual([expect.objectContaining({ current: true })]);
    expect(html).not.toContain('Sign out everywhere else');

    for (const other of others) {
      const page = await other.page('/cart/');
      expect(hasLoginLink(page.html)).toBe(true);
      expect(cartOf(page.html)).toEqual({});
    }
    const mine = await keep.page('/cart/');
    expect(signedInAs(mine.html)).toBe('demo');
    expect(cartOf(mine.html)).toEqual({ 'awesome-item': 1 });
  });
});

describe('a sign-in that ended elsewhere', () => {
  const notice = (html: string) =>
    [...html.matchAll(/<div class="flash flash-\w+" role="status">([^<]*)</g)].map((m) => m[1]);

  it('tells a device signed out from another device so, once', async () => {
    const keep = await signedIn();
    const gone = await signedIn();
    await keep.post('/devices/revoke-others', { csrf: await keep.csrf('/devices') });

    const next = await gone.page('/cart/');
    expect(hasLoginLink(next.html)).toBe(true);
    expect(notice(next.html)).toEqual(['You were signed out on this device from another device.']);
    expect(notice((await gone.page('/cart/')).html)).toEqual([]);
    // The note is non-secret and gone once told.
    expect(gone.jar.has('signed_in')).toBe(false);
  });

  it('tells a browser whose session cookie expired that its sign-in expired', async () => {
    const visitor = await signedIn();
    expect(visitor.jar.get('signed_in')).toBe('1');
    // The browser drops the session cookie when it expires; the note outlives it.
    visitor.cookie = undefined;
    const next = await visitor.page('/');
    expect(notice(next.html)).toEqual([
      'Your sign-in expired on this device. Log in again to continue.',
    ]);
    expect(notice((await visitor.page('/')).html)).toEqual([]);
  });

  it('tells nothing after logging out here, or to a browser that never signed in', async () => {
    const visitor = await signedIn();
    await visitor.post('/logout', { csrf: await visitor.csrf('/cart/') });
    expect(notice((await visitor.page('/')).html)).toEqual([]);
    const stranger = new Visitor(app.url);
    stranger.cookie = 'A'.repeat(43);
    expect(notice((await stranger.page('/')).html)).toEqual([]);
  });
});

describe('logging out', () => {
  it('flushes the session: the record, the cookie and the cart go', async () => {
    const visitor = await signedIn();
    await visitor.page('/add_to_cart/coffee-mug/');
    const id = visitor.cookie;
    const res = await visitor.post('/logout', { csrf: await visitor.csrf('/cart/') });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    // The session cookie goes, and so does the note that this browser is signed in.
    expect(res.headers.getSetCookie().sort()).toEqual([
      expect.stringMatching(/^sessionid=;.*Max-Age=0/),
      expect.stringMatching(/^signed_in=;.*Expires=Thu, 01 Jan 1970/),
    ]);
    expect(visitor.cookie).toBeUndefined();

    const replay = new Visitor(app.url);
    replay.cookie = id;
    const page = await replay.page('/cart/');
    expect(hasLoginLink(page.html)).toBe(true);
    expect(cartOf(page.html)).toEqual({});
  });

  it('needs the CSRF token of a signed-in session, and does nothing when signed out', async () => {
    const visitor = await signedIn();
    expect((await visitor.post('/logout', {})).status).toBe(403);
    expect(signedInAs((await visitor.page('/')).html)).toBe('demo');

    const anonymous = new Visitor(app.url);
    await anonymous.page('/add_to_cart/rubber-duck/');
    const res = await anonymous.post('/logout', {});
    expect(res.status).toBe(303);
    expect(cartOf((await anonymous.page('/cart/')).html)).toEqual({ 'rubber-duck': 1 });
  });
});

describe('on the cookie store', () => {
  it('logs in, and the devices page says plainly that it cannot list sessions', async () => {
    const cookieApp = await startServer({
      PORT: String(await freePort()),
      SATCHEL_STORE: 'cookie',
      SATCHEL_SECRET: 'a-demo-secret-of-at-least-32-characters',
    });
    try {
      const visitor = new Visitor(cookieApp.url);
      await visitor.page('/add_to_cart/rubber-duck/');
      const form = {
        csrf: await visitor.csrf('/login'),
        username: 'demo',
        password: 'demo-password',
      };
      expect((await visitor.post('/login', form)).status).toBe(303);
      const { status, html } = await visitor.page('/devices');
      expect(status).toBe(200);
      expect(signedInAs(html)).toBe('demo');
      expect(html).toContain(
        'id="devices-unsupported">the cookie store cannot list sessions by owner: it keeps nothing on the server',
      );
      expect(cartOf((await visitor.page('/cart/')).html)).toEqual({ 'rubber-duck': 1 });
      const res = await visitor.post('/devices/revoke-others', {
        csrf: await visitor.csrf('/devices'),
      });
      expect(res.status).toBe(303);
      expect((await visitor.page('/devices')).html).toContain('flash-error');
    } finally {
      await cookieApp.stop();
    }
  });
});
