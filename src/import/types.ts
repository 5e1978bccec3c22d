/**
 * The contract between the legacy-session importers (`satchel/import/*`) and
 * the manager: an importer recognizes a cookie another session library set,
 * verifies it, and hands back that library's session data; the manager turns
 * it into a satchel session. Importers never write to satchel's store.
 */

/** Reads sessions another library (express-session, Django) left behind. */
export interface LegacyImporter {
  /** Names the legacy library, in messages and in `LegacySession.importer`: `'express-session'`, `'django'`. */
  readonly name: string;
  /**
   * Looks for this library's session cookie among the request's cookies
   * (already parsed: name -> decoded value) and reads its record.
   *
   * Resolves to undefined when nothing valid is there: no cookie, a value of
   * the wrong shape, a forged signature, an unknown or expired session. It never
   * rejects for bad input. It rejects with `StoreUnavailableError` only when
   * the legacy store cannot be reached, which adapters answer with 503.
   *
   * @param now the time the request is judged at, in ms since the epoch.
   */
  read(cookies: Readonly<Record<string, string>>, now: number): Promise<LegacySession | undefined>;
  /**
   * What the cookie alone tells, without asking the legacy store: when the
   * request carries this library's cookie, well-formed and (where the cookie
   * is signed) correctly signed, the `idSeed` a session imported from it has
   * and the headers deleting it. `readLegacySession` uses it to find a
   * session a concurrent request imported moments ago, after that request's
   * `finish()` removed the legacy record. Never throws.
   */
  recognize(
    cookies: Readonly<Record<string, string>>,
  ): Pick<LegacySession, 'idSeed' | 'clearCookies'> | undefined;
}

/** One legacy session, verified and read, ready to become a satchel session. */
export interface LegacySession {
  /** The `name` of the importer that read it. */
  importer: string;
  /**
   * The legacy data with the legacy library's own bookkeeping removed
   * (express-session's `cookie` field, Django's `_session_expiry`). Only
   * JSON-compatible values.
   */
  data: Record<string, unknown>;
  /**
   * When the legacy session expires (ms since the epoch), when it has such a
   * time; the manager keeps the earlier of this and its own policy.
   */
  expiresAt?: number;
  /**
   * True when the legacy record was already gone but a satchel session was
   * imported under `idSeed` moments ago, by a concurrent request (see
   * `readLegacySession`'s `recentlyImported`): `data` is empty, and the
   * manager loads that session instead of creating one.
   */
  alreadyImported?: boolean;
  /**
   * The ID the satchel session is created under: 32 bytes as 43 base64url
   * characters, HMAC-SHA256(legacy secret, `'satchel-import:' + importer + ':'
   * + legacy session ID`). Every process derives the same ID for the same
   * legacy session, so concurrent first requests import into one satchel
   * session: the second `store.create` finds the key taken and loads it. It is
   * as secret as the legacy secret; whoever holds the legacy cookie already
   * holds the session.
   */
  idSeed: string;
  /**
   * `Set-Cookie` header values that delete the legacy cookie (the name, path
   * and domain the legacy library set it with).
   */
  clearCookies: string[];
  /**
   * Removes the legacy record, so the legacy cookie cannot be replayed into a
   * second import; a no-op when the importer was made with `keepLegacy: true`.
   * The manager calls it once the satchel session is stored. Rejects with
   * `StoreUnavailableError` when the legacy store cannot be reached (the
   * satchel session is stored by then; the manager may log and carry on).
   */
  finish(): Promise<void>;
}
