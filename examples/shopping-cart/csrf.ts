/**
 * CSRF protection for the demo's POST forms, kept out of the session store:
 * browsing the catalog must not write a session (a crawler would fill the
 * store), so the secret lives where Django keeps it by default
 * (CSRF_USE_SESSIONS = False): in a `csrftoken` cookie.
 *
 * - The cookie holds a random 256-bit secret; HttpOnly (the demo runs no
 *   JavaScript), SameSite=Lax, Secure on HTTPS, for a year as Django's.
 * - Every form carries the secret masked with a fresh random pad
 *   (`pad ‖ secret ⊕ pad`, base64url), as Django masks its token, so the page
 *   never repeats a constant that a compression side channel (BREACH) could
 *   recover.
 * - A POST is accepted when its `csrf` field (or `X-CSRFToken` header)
 *   unmasks to the cookie's secret, compared in constant time, and when its
 *   `Origin` header, if sent, names this host (Django checks Origin too).
 *
 * Why not sign the cookie: a signature proves the server issued the secret,
 * but an attacker able to plant cookies on this host can fetch a correctly
 * signed one for themselves and plant that; only binding the secret to the
 * session would stop it, and there is no session while browsing, which is the
 * point. SameSite=Lax and the Origin check are what stop cross-site forms.
 *
 * Clients without cookies (the URL and header transports) cannot hold that
 * cookie, so there the secret is kept in the session instead, as before; the
 * same masking applies. The guard is chosen once, by transport.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { parse as parseCookies } from 'cookie';
import type { Request, Response } from 'express';

/** The cookie holding the secret, under Django's name. */
export const CSRF_COOKIE = 'csrftoken';
/** The header an API client may send the token in instead of the form field, as Django's. */
export const CSRF_HEADER = 'x-csrftoken';

const SECRET_BYTES = 32;
/** Django's CSRF_COOKIE_AGE: about a year. */
const COOKIE_MAX_AGE_MS = 52 * 7 * 24 * 3600 * 1000;

/** Why a POST was refused. */
export type CsrfFailure =
  /** The Origin header names another site (or is `null`). */
  | 'origin'
  /** The request carried no secret to check against (no cookie, or no session secret). */
  | 'missing-secret'
  /** The form's token is missing or does not unmask to the secret. */
  | 'token';

/** Where the CSRF secret lives and how a POST is checked against it. */
export interface CsrfGuard {
  /** Where the secret is kept, for the README's and the panel's wording. */
  readonly kind: 'cookie' | 'session';
  /**
   * A token for this response's forms: the secret, masked anew. Issues the
   * secret first when the request has none (a cookie or a session write).
   */
  token(req: Request, res: Response): string;
  /** Undefined when the POST carries a valid token, else why not. */
  check(req: Request): CsrfFailure | undefined;
  /** A new secret, so tokens from before are worthless (at login, as Django's rotate_token). */
  rotate(req: Request, res: Response): void;
}

/** The secret the request carries in the cookie, if well formed. */
function cookieSecret(req: Request): Buffer | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  return decodeSecret(parseCookies(header)[CSRF_COOKIE]);
}

function decodeSecret(text: unknown): Buffer | undefined {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined;
  const secret = Buffer.from(text, 'base64url');
  return secret.length === SECRET_BYTES ? secret : undefined;
}

/** `pad ‖ secret ⊕ pad`, base64url (86 characters). */
export function maskSecret(secret: Buffer): string {
  const pad = randomBytes(SECRET_BYTES);
  const masked = Buffer.alloc(SECRET_BYTES);
  for (let i = 0; i < SECRET_BYTES; i++) masked[i] = secret[i]! ^ pad[i]!;
  return Buffer.concat([pad, masked]).toString('base64url');
}

/** The secret inside a masked token, or undefined when it is not one. */
export function unmaskToken(token: unknown): Buffer | undefined {
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(token)) return undefined;
  const bytes = Buffer.from(token, 'base64url');
  if (bytes.length !== 2 * SECRET_BYTES) return undefined;
  const secret = Buffer.alloc(SECRET_BYTES);
  for (let i = 0; i < SECRET_BYTES; i++) secret[i] = bytes[i]! ^ bytes[SECRET_BYTES + i]!;
  return secret;
}

/** The token the POST carries: the form field, else the X-CSRFToken header. */
function submitted(req: Request): unknown {
  const field = (req.body as Record<string, unknown> | undefined)?.csrf;
  return field ?? req.get(CSRF_HEADER);
}

/** True when the token unmasks to `secret`; constant time in the secret's value. */
function tokenMatches(secret: Buffer, token: unknown): boolean {
  const carried = unmaskToken(token);
  return carried !== undefined && timingSafeEqual(carried, secret);
}

/**
 * True when the request's Origin, if any, is this host. Browsers send Origin
 * with every POST; `null` (an opaque origin: sandboxed frames, some
 * redirects) is refused, as Django refuses it. Only the host is compared: the
 * demo does not know whether a proxy in front of it terminates TLS.
 */
function sameOrigin(req: Request): boolean {
  const origin = req.get('origin');
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.get('host')?.toLowerCase();
  } catch {
    return false;
  }
}

/** The secret in a `csrftoken` cookie: browsing stores nothing on the server. */
export function cookieCsrf(): CsrfGuard {
  const issue = (req: Request, res: Response): Buffer => {
    const secret = randomBytes(SECRET_BYTES);
    res.cookie(CSRF_COOKIE, secret.toString('base64url'), {
      httpOnly: true,
      sameSite: 'lax',
      secure: req.secure,
      path: '/',
      maxAge: COOKIE_MAX_AGE_MS,
    });
    res.locals.csrfSecret = secret;
    return secret;
  };
  return {
    kind: 'cookie',
    token(req, res) {
      const secret =
        (res.locals.csrfSecret as Buffer | undefined) ?? cookieSecret(req) ?? issue(req, res);
      res.locals.csrfSecret = secret;
      return maskSecret(secret);
    },
    check(req) {
      if (!sameOrigin(req)) return 'origin';
      const secret = cookieSecret(req);
      if (secret === undefined) return 'missing-secret';
      return tokenMatches(secret, submitted(req)) ? undefined : 'token';
    },
    rotate(req, res) {
      issue(req, res);
    },
  };
}

/**
 * The secret in the session, for clients that send no cookies (the URL and
 * header transports). Their session ID is not sent by the browser on its own,
 * so a cross-site form cannot reach their session; the token still ties
 * each form to the session it was rendered for.
 */
export function sessionCsrf(): CsrfGuard {
  return {
    kind: 'session',
    token(req) {
      let secret = decodeSecret(req.session.get('csrf'));
      if (secret === undefined) {
        const fresh = randomBytes(SECRET_BYTES).toString('base64url');
        // If a parallel first request stored a secret already, keep that one.
        // Updaters stay pure: they may run again on newer data.
        secret = decodeSecret(
          req.session.update('csrf', (current) => (decodeSecret(current) ? current! : fresh)),
        )!;
      }
      return maskSecret(secret);
    },
    check(req) {
      const secret = decodeSecret(req.session.get('csrf'));
      if (secret === undefined) return 'missing-secret';
      return tokenMatches(secret, submitted(req)) ? undefined : 'token';
    },
    rotate(req) {
      req.session.set('csrf', randomBytes(SECRET_BYTES).toString('base64url'));
    },
  };
}
