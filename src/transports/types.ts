/** The little an adapter tells the manager about a request. */
export interface IncomingRequest {
  /** A request header by lower-case name. */
  header(name: string): string | undefined;
  /** True when the connection itself is TLS. */
  encrypted: boolean;
  /** The request target (path and query), for the URL transport. */
  url?: string;
}

/** The `transport` option with its defaults filled in (`sessions.transport`); header names lower-case. */
export interface ResolvedTransport {
  type: 'cookie' | 'header' | 'url';
  /** Request header carrying the ID (header transport). */
  header: string;
  /** Response header carrying a new ID (header transport). */
  responseHeader: string;
  /** Query parameter carrying the ID (URL transport). */
  param: string;
}

/** The session value a request carried, and where. */
export interface IncomingValue {
  raw: string | undefined;
  via: 'cookie' | 'header' | 'url' | undefined;
}

/** What the response must carry for the session, as the commit decided it. */
export interface OutgoingValue {
  /** The value to send (signed ID or sealed session); undefined to delete it. */
  value: string | undefined;
  /** When the client should drop it; undefined for a browser-session cookie. */
  expires: Date | undefined;
  /** The request came over HTTPS. */
  secure: boolean;
  /** The value is the very ID that arrived in this request's URL. */
  fromUrl: boolean;
}

/** Writes the session ID into links of a page, for clients that send no cookie. */
export interface Linker {
  encode(url: string): string;
  /** encode() put the ID into at least one link. */
  readonly used: boolean;
}

/**
 * Where the session ID travels: read it from a request, write it (or its
 * deletion) to a response. One implementation per way (cookie, header, URL);
 * the manager never asks which one it has.
 */
export interface Transport {
  readonly settings: Readonly<ResolvedTransport>;
  /** The request field responses vary on: `Cookie`, or the header's name. */
  readonly vary: string;
  /** The transport can carry a sealed (cookie-store) session. */
  readonly carriesSealed: boolean;
  read(request: IncomingRequest): IncomingValue;
  /** Response headers carrying `out`; none when the value must not travel this way. */
  write(out: OutgoingValue): [string, string][];
  /**
   * A link encoder for this request, when its client needs the ID in links;
   * `idFor()` gives the current ID (issuing one for a new session).
   */
  linker?(
    request: IncomingRequest,
    incoming: IncomingValue,
    idFor: () => string,
  ): Linker | undefined;
  /** Headers for a response whose URL or links carry the ID. */
  readonly exposureHeaders?: readonly [string, string][];
}
