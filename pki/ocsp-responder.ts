/**
 * The OCSP responder (RFC 6960, with the RFC 5019 lightweight profile): answers good, revoked or
 * unknown for certificates our CAs issued, signed by each CA's delegated responder certificate.
 *
 * Responses without a nonce are pre-produced: signed once per (issuer, serial, CertID hash) and
 * served from memory until shortly before their nextUpdate, or until the certificate is revoked
 * (`invalidate`). A request with a nonce gets a freshly signed response that is never cached.
 */
import { createHash } from 'node:crypto';
import { Certificate } from 'pkijs';
import type { KeyCustody } from '../custody/key-custody';
import type { Database } from '../db/client';
import { BatchedReads } from '../foundation/batched-reads';
import type { Logger } from '../foundation/logger';
import type { CertificateAuthoritySettings, ServiceIdentities } from './certificate-authority';
import { CertificateStore, isCaCertificateType, type CertificateRow, type RevocationEntry } from './certificate-store';
import { signatureAlgorithmFor, wholeSeconds } from './certificate-builder';
import { statedReasonCode } from './crl';
import {
  buildSuccessfulResponse,
  certIdHashes,
  issuerHashes,
  MalformedOcspRequestError,
  parseOcspRequest,
  responderSigningIdentity,
  statusOnlyResponse,
  type CertificateStatus,
  type OcspResponseStatus,
  type ResponderSigningIdentity,
  type SingleStatus,
} from './ocsp-messages';
import { fromPem } from '../x509/pem';
import { keyAlgorithmOf } from '../x509/public-key';

export interface OcspResponderDependencies {
  db: Database;
  /** Issues each CA's delegated responder certificate. */
  ca: Pick<ServiceIdentities, 'ensureOcspResponder'>;
  /** Holds the responders' keys (exportable, so signing happens in memory). */
  custody: KeyCustody;
  settings: Pick<CertificateAuthoritySettings, 'ocspResponseValidityMinutes'>;
  logger: Logger;
  /** CertIDs answered in one request; RFC 5019 clients send one. Default 10. */
  maxCertIdsPerRequest?: number;
  /** Pre-produced responses are re-signed this long before their nextUpdate. Default a quarter of the validity, at most 10 minutes. */
  refreshMarginMs?: number;
  /** Bound on pre-produced responses kept in memory. Default 200,000. */
  maxCachedResponses?: number;
  /**
   * How long a status read from the database answers fresh (nonce) requests too; 0 reads it for
   * every signed answer. Default: as long as a pre-produced response is served.
   */
  statusCacheMs?: number;
  /** Unknown issuers make the responder re-read the CAs at most this often. Default 1 s. */
  issuerReloadIntervalMs?: number;
}

export interface OcspAnswer {
  status: OcspResponseStatus;
  der: Uint8Array;
  /** Set for signed responses without a nonce: what HTTP caches need (RFC 5019 section 6.2). */
  cacheable?: {
    producedAt: Date;
    nextUpdate: Date;
    /** When this responder stops serving it; HTTP max-age runs until then. */
    refreshAt: Date;
    etag: string;
  };
}

interface KnownIssuer {
  caCertificateId: string;
  revoked: boolean;
  expiresAt: Date;
}

interface Responder {
  identity: ResponderSigningIdentity;
  certificateId: string;
  expiresAt: Date;
  renewAt: number;
}

const statusOnly = {
  malformedRequest: statusOnlyResponse('malformedRequest'),
  internalError: statusOnlyResponse('internalError'),
  unauthorized: statusOnlyResponse('unauthorized'),
};

export class OcspResponder {
  readonly #certificates: CertificateStore;
  readonly #ca: OcspResponderDependencies['ca'];
  readonly #custody: KeyCustody;
  readonly #logger: Logger;
  readonly #validityMs: number;
  readonly #refreshMarginMs: number;
  readonly #maxCertIds: number;
  readonly #maxCached: number;
  readonly #issuerReloadIntervalMs: number;
  readonly #statusCacheMs: number;

  /** `${hash}:${issuerNameHash}:${issuerKeyHash}` → CA. */
  #issuers = new Map<string, KnownIssuer>();
  #issuersLoadedAt = 0;
  #issuersLoading: Promise<void> | undefined;
  readonly #responders = new Map<string, Promise<Responder>>();
  /** `${caCertificateId}:${serial}:${hash}` → signed answer. Insertion order approximates age for eviction. */
  readonly #cache = new Map<string, OcspAnswer & { refreshAtMs: number }>();
  /** Raw request DER (latin1) → cache key, so a repeated request skips parsing too. */
  readonly #requests = new Map<string, string>();
  /** What callers know a request by besides its DER (an HTTP GET path) → cache key: no decoding either. */
  readonly #aliases = new Map<string, string>();
  /**
   * `${caCertificateId}:${serial}` → status, kept as long as a pre-produced response would be, and
   * dropped with it on revocation: fresh (nonce) answers then cost a signature, not a query.
   */
  readonly #statusCache = new Map<string, { status: CertificateStatus; untilMs: number }>();
  /**
   * `${caCertificateId}:${serial}` → its row, read from the database: statuses wanted while a read
   * is under way are read together in the next, one query for many requests under load.
   */
  readonly #revocationStates = new BatchedReads<string, RevocationEntry>((keys) => this.#readRevocationStates(keys));
  /** Bumped by every invalidation, so an answer read or signed before it is not kept after it. */
  #generation = 0;
  /** Concurrent identical misses sign once. */
  readonly #signing = new Map<string, Promise<OcspAnswer>>();

  constructor(deps: OcspResponderDependencies) {
    this.#certificates = new CertificateStore(deps.db);
    this.#ca = deps.ca;
    this.#custody = deps.custody;
    this.#logger = deps.logger;
    this.#validityMs = deps.settings.ocspResponseValidityMinutes * 60 * 1000;
    this.#refreshMarginMs = deps.refreshMarginMs ?? Math.min(this.#validityMs / 4, 10 * 60 * 1000);
    this.#maxCertIds = deps.maxCertIdsPerRequest ?? 10;
    this.#maxCached = deps.maxCachedResponses ?? 200_000;
    this.#issuerReloadIntervalMs = deps.issuerReloadIntervalMs ?? 1000;
    this.#statusCacheMs = deps.statusCacheMs ?? this.#validityMs - this.#refreshMarginMs;
  }

  /**
   * The DER OCSPResponse for a DER OCSPRequest; never throws. `alias` is another name the caller
   * knows this request by (its GET path): a pre-produced answer is then found by `cachedAnswer(alias)`.
   */
  async respond(requestDer: Uint8Array, alias?: string): Promise<OcspAnswer> {
    const requestKey = Buffer.from(requestDer.buffer, requestDer.byteOffset, requestDer.byteLength).toString('latin1');
    const cacheKey = this.#requests.get(requestKey);
    if (cacheKey !== undefined) {
      const cached = this.#cached(cacheKey);
      if (cached) {
        if (alias !== undefined) this.#remember(this.#aliases, alias, cacheKey);
        return cached;
      }
    }
    try {
      return await this.#answer(requestDer, requestKey, alias);
    } catch (error) {
      if (error instanceof MalformedOcspRequestError) {
        this.#logger.debug({ reason: error.message }, 'malformed OCSP request');
        return { status: 'malformedRequest', der: statusOnly.malformedRequest };
      }
      this.#logger.error({ err: error }, 'could not answer an OCSP request');
      return { status: 'internalError', der: statusOnly.internalError };
    }
  }

  /**
   * The pre-produced answer to the request `respond` was given under `alias`, while it is served
   * (not due for re-signing, not revoked since): no parsing, no promise, for the hot path.
   */
  cachedAnswer(alias: string): OcspAnswer | undefined {
    const cacheKey = this.#aliases.get(alias);
    return cacheKey === undefined ? undefined : this.#cached(cacheKey);
  }

  /**
   * Forgets what was said about a certificate: call it when one is revoked. For a CA it also
   * forgets the CA (and everything said about its certificates); for a responder certificate, the
   * responder, which is then re-issued.
   */
  async invalidate(certificateId: string): Promise<void> {
    const row = await this.#certificates.find(certificateId);
    if (row) this.onRevoked(row);
  }

  /** As `invalidate`, for a caller that already holds the certificate's row. */
  onRevoked(row: Pick<CertificateRow, 'id' | 'certificateType' | 'issuerCertificateId' | 'serialNumber'>): void {
    this.#generation += 1;
    if (row.issuerCertificateId) {
      for (const hash of certIdHashes) this.#cache.delete(`${row.issuerCertificateId}:${row.serialNumber}:${hash}`);
      this.#statusCache.delete(`${row.issuerCertificateId}:${row.serialNumber}`);
    }
    if (row.certificateType === 'ocsp' && row.issuerCertificateId) {
      // What the revoked responder signed is no longer served; its successor signs afresh.
      this.#responders.delete(row.issuerCertificateId);
      for (const key of this.#cache.keys()) if (key.startsWith(`${row.issuerCertificateId}:`)) this.#cache.delete(key);
    }
    if (isCaCertificateType(row.certificateType)) {
      this.#responders.delete(row.id);
      for (const key of this.#cache.keys()) if (key.startsWith(`${row.id}:`)) this.#cache.delete(key);
      for (const key of this.#statusCache.keys()) if (key.startsWith(`${row.id}:`)) this.#statusCache.delete(key);
      this.#issuersLoadedAt = 0;
      for (const [key, issuer] of this.#issuers) if (issuer.caCertificateId === row.id) this.#issuers.delete(key);
    }
  }

  async #answer(requestDer: Uint8Array, requestKey: string, alias: string | undefined): Promise<OcspAnswer> {
    const request = parseOcspRequest(requestDer, { maxCertIds: this.#maxCertIds });

    const issuers: KnownIssuer[] = [];
    for (const requested of request.certificates) {
      const issuer = requested.hash && (await this.#issuer(`${requested.hash}:${requested.issuerNameHash}:${requested.issuerKeyHash}`));
      // RFC 5019 section 2.2.3: a CertID of an issuer we do not serve is answered unauthorized.
      if (!issuer || issuer.revoked || issuer.expiresAt.getTime() <= Date.now()) {
        return { status: 'unauthorized', der: statusOnly.unauthorized };
      }
      issuers.push(issuer);
    }
    const caCertificateId = issuers[0]!.caCertificateId;
    // Delegated responders answer for one CA each; one response cannot speak for several.
    if (issuers.some((issuer) => issuer.caCertificateId !== caCertificateId)) {
      return { status: 'unauthorized', der: statusOnly.unauthorized };
    }

    if (request.nonce || request.certificates.length > 1) {
      return this.#sign(caCertificateId, request.certificates, request.nonce);
    }
    const [only] = request.certificates;
    const cacheKey = `${caCertificateId}:${only!.serialNumber ?? '-'}:${only!.hash}`;
    this.#remember(this.#requests, requestKey, cacheKey);
    if (alias !== undefined) this.#remember(this.#aliases, alias, cacheKey);
    const cached = this.#cached(cacheKey);
    if (cached) return cached;

    let pending = this.#signing.get(cacheKey);
    if (!pending) {
      const generation = this.#generation;
      pending = this.#sign(caCertificateId, request.certificates).then((answer) => {
        if (answer.cacheable && generation === this.#generation) {
          this.#remember(this.#cache, cacheKey, { ...answer, refreshAtMs: answer.cacheable.refreshAt.getTime() });
        }
        return answer;
      });
      pending.finally(() => this.#signing.delete(cacheKey)).catch(() => {});
      this.#signing.set(cacheKey, pending);
    }
    return pending;
  }

  async #sign(
    caCertificateId: string,
    requested: { serialNumber: string | undefined; certId: SingleStatus['certId'] }[],
    nonce?: Uint8Array,
  ): Promise<OcspAnswer> {
    const [responder, statuses] = await Promise.all([
      this.#responder(caCertificateId),
      this.#statuses(caCertificateId, requested.map((entry) => entry.serialNumber)),
    ]);
    const now = wholeSeconds(new Date());
    // Never claim validity beyond the responder certificate that vouches for it.
    const nextUpdate = wholeSeconds(new Date(Math.min(now.getTime() + this.#validityMs, responder.expiresAt.getTime())));
    const der = await buildSuccessfulResponse({
      responder: responder.identity,
      producedAt: now,
      thisUpdate: now,
      nextUpdate,
      statuses: requested.map((entry, index) => ({ certId: entry.certId, status: statuses[index]! })),
      ...(nonce ? { nonce } : {}),
    });
    if (nonce) return { status: 'successful', der };
    return {
      status: 'successful',
      der,
      cacheable: {
        producedAt: now,
        nextUpdate,
        refreshAt: new Date(Math.max(now.getTime(), nextUpdate.getTime() - this.#refreshMarginMs)),
        etag: `"${createHash('sha1').update(der).digest('hex')}"`,
      },
    };
  }

  /** Status of each serial under the CA; unknown for one it never issued. */
  async #statuses(caCertificateId: string, serials: (string | undefined)[]): Promise<CertificateStatus[]> {
    const now = Date.now();
    const known = new Map<string, CertificateStatus>();
    for (const serial of serials) {
      if (serial === undefined) continue;
      const entry = this.#statusCache.get(`${caCertificateId}:${serial}`);
      if (entry && now < entry.untilMs) known.set(serial, entry.status);
    }
    const wanted = [...new Set(serials.filter((serial): serial is string => serial !== undefined && !known.has(serial)))];
    if (wanted.length > 0) {
      const generation = this.#generation;
      const rows = await Promise.all(wanted.map((serial) => this.#revocationStates.get(`${caCertificateId}:${serial}`)));
      const untilMs = now + this.#statusCacheMs;
      for (const [index, serial] of wanted.entries()) {
        const row = rows[index];
        let status: CertificateStatus;
        if (!row) status = { status: 'unknown' };
        else if (!row.revokedAt) status = { status: 'good' };
        else {
          const reasonCode = statedReasonCode(row.revocationReason);
          status = { status: 'revoked', revocationTime: wholeSeconds(row.revokedAt), ...(reasonCode === undefined ? {} : { reasonCode }) };
        }
        known.set(serial, status);
        if (generation === this.#generation && this.#statusCacheMs > 0) this.#remember(this.#statusCache, `${caCertificateId}:${serial}`, { status, untilMs });
      }
    }
    return serials.map((serial) => (serial === undefined ? { status: 'unknown' } : known.get(serial)!));
  }

  /** One query per CA for the `${caCertificateId}:${serial}` keys asked for together. */
  async #readRevocationStates(keys: string[]): Promise<Map<string, RevocationEntry>> {
    const serialsByCa = new Map<string, string[]>();
    for (const key of keys) {
      const [caCertificateId, serial] = key.split(':') as [string, string];
      const serials = serialsByCa.get(caCertificateId);
      if (serials) serials.push(serial);
      else serialsByCa.set(caCertificateId, [serial]);
    }
    const found = new Map<string, RevocationEntry>();
    for (const [caCertificateId, serials] of serialsByCa) {
      for (const row of await this.#certificates.revocationStates(caCertificateId, serials)) found.set(`${caCertificateId}:${row.serialNumber}`, row);
    }
    return found;
  }

  #cached(cacheKey: string): OcspAnswer | undefined {
    const entry = this.#cache.get(cacheKey);
    if (!entry) return undefined;
    if (Date.now() < entry.refreshAtMs) return entry;
    this.#cache.delete(cacheKey);
    return undefined;
  }

  #remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > this.#maxCached) map.delete(map.keys().next().value!);
  }

  async #issuer(key: string): Promise<KnownIssuer | undefined> {
    const known = this.#issuers.get(key);
    if (known) return known;
    // A CA created since the last read, or a stranger's CertID: re-read, but not for every stranger.
    if (!this.#issuersLoading && Date.now() - this.#issuersLoadedAt >= this.#issuerReloadIntervalMs) {
      this.#issuersLoading = this.#loadIssuers().finally(() => (this.#issuersLoading = undefined));
    }
    // Requests arriving while the CAs are read wait for them (a fresh responder's first burst too).
    if (this.#issuersLoading) await this.#issuersLoading;
    return this.#issuers.get(key);
  }

  async #loadIssuers(): Promise<void> {
    this.#issuersLoadedAt = Date.now();
    // A renewed services intermediate shares name and key with the one it superseded, so their
    // CertIDs are the same: the live one, read last, answers.
    const rows = await this.#certificates.caCertificatesLiveLast();
    const issuers = new Map<string, KnownIssuer>();
    for (const row of rows) {
      const der = fromPem(row.pem, ['CERTIFICATE']);
      if (!der) continue;
      const certificate = Certificate.fromBER(der);
      for (const hash of certIdHashes) {
        const { issuerNameHash, issuerKeyHash } = issuerHashes(certificate, hash);
        issuers.set(`${hash}:${issuerNameHash}:${issuerKeyHash}`, {
          caCertificateId: row.id,
          revoked: row.revokedAt !== null,
          expiresAt: row.expiresAt,
        });
      }
    }
    this.#issuers = issuers;
  }

  /** The CA's delegated responder, issued or re-issued through the CA when due. */
  #responder(caCertificateId: string): Promise<Responder> {
    const current = this.#responders.get(caCertificateId);
    const load = async (): Promise<Responder> => {
      const row = await this.#ca.ensureOcspResponder(caCertificateId);
      const der = fromPem(row.pem, ['CERTIFICATE']);
      if (!der) throw new Error(`OCSP responder certificate ${row.id} has no PEM stored`);
      const algorithm = signatureAlgorithmFor(keyAlgorithmOf(fromPem(row.publicKey, ['PUBLIC KEY'])!));
      const location = row.privateKeyLocation;
      const issued = row.issuedAt.getTime();
      const expires = row.expiresAt.getTime();
      return {
        certificateId: row.id,
        expiresAt: row.expiresAt,
        // The CA re-issues once a third of the validity is left; ask again from then on.
        renewAt: expires - (expires - issued) / 3,
        identity: responderSigningIdentity(der, algorithm.identifier, (tbs) => this.#custody.sign(location, algorithm.hash, tbs)),
      };
    };
    if (!current) return this.#cacheResponder(caCertificateId, load());
    return current.then((responder) => {
      if (Date.now() < responder.renewAt) return responder;
      // Only the first caller past the renewal time replaces the promise; the rest share it.
      if (this.#responders.get(caCertificateId) === current) return this.#cacheResponder(caCertificateId, load());
      return this.#responders.get(caCertificateId) ?? this.#cacheResponder(caCertificateId, load());
    });
  }

  #cacheResponder(caCertificateId: string, pending: Promise<Responder>): Promise<Responder> {
    this.#responders.set(caCertificateId, pending);
    // A failure (database away) must not stick: the next request tries again.
    pending.catch(() => {
      if (this.#responders.get(caCertificateId) === pending) this.#responders.delete(caCertificateId);
    });
    return pending;
  }
}
