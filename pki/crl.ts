/**
 * Certificate revocation lists (RFC 5280 section 5): each CA signs, through key custody, a full v2
 * CRL of the unexpired certificates it issued that are revoked. Every CRL is stored with its number,
 * which only grows per CA, and served as signed until a newer one replaces it. Intermediates' CRLs
 * are short-lived and re-signed on every scheduled run; a root's is long-lived and re-signed only
 * when a third of it is left or a certificate the root issued was revoked, so the root key is
 * needed at ceremonies only.
 */
import { createPublicKey, verify } from 'node:crypto';
import * as asn1js from 'asn1js';
import { CertificateRevocationList, Extension, Extensions, RevokedCertificate, Time, TimeType } from 'pkijs';
import { isUniqueViolation, type Database } from '../db/client';
import { KeyedMutex } from '../foundation/keyed-mutex';
import type { Logger } from '../foundation/logger';
import type { CaIssuer, CertificateAuthoritySettings } from './certificate-authority';
import { signatureAlgorithmFor, wholeSeconds, type CertificateSigner } from './certificate-builder';
import { CertificateStore, type RevocationReason } from './certificate-store';
import { CrlStore, type CertificateRevocationListRow } from './crl-store';
import { authorityKeyIdentifierExtension } from '../x509/extensions';
import { oids } from '../x509/oids';

/** CRLReason codes (RFC 5280 section 5.3.1); 7 is unused, so the names' order is not the code. */
export const crlReasonCodes: Record<RevocationReason, number> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

/**
 * The reason code to state for a stored reason, or undefined when none should be stated: RFC 5280
 * asks that `unspecified` be conveyed by leaving the reason out.
 */
export function statedReasonCode(reason: string | null): number | undefined {
  if (reason === null || !(reason in crlReasonCodes)) return undefined;
  const code = crlReasonCodes[reason as RevocationReason];
  return code === 0 ? undefined : code;
}

export interface CrlPublisherDependencies {
  db: Database;
  ca: CaIssuer;
  settings: Pick<CertificateAuthoritySettings, 'crlValidityHours' | 'rootCrlValidityDays'>;
  logger: Logger;
  /**
   * An intermediate's CRL is signed anew once less than this is left before nextUpdate; default a
   * quarter of the validity, at most an hour. A root's, once a third of its validity is left.
   */
  refreshMarginMs?: number;
}

/** Two publishers in different processes may pick the same number; the loser signs again. */
const maximumNumberAttempts = 5;

export class CrlPublisher {
  readonly #certificates: CertificateStore;
  readonly #crls: CrlStore;
  readonly #ca: CaIssuer;
  readonly #validityMs: number;
  readonly #refreshMarginMs: number;
  readonly #rootValidityMs: number;
  readonly #logger: Logger;
  readonly #locks = new KeyedMutex();

  constructor(deps: CrlPublisherDependencies) {
    this.#certificates = new CertificateStore(deps.db);
    this.#crls = new CrlStore(deps.db);
    this.#ca = deps.ca;
    this.#logger = deps.logger;
    this.#validityMs = deps.settings.crlValidityHours * 60 * 60 * 1000;
    this.#refreshMarginMs = deps.refreshMarginMs ?? Math.min(this.#validityMs / 4, 60 * 60 * 1000);
    this.#rootValidityMs = deps.settings.rootCrlValidityDays * 24 * 60 * 60 * 1000;
  }

  /** Signs and stores a new CRL for the CA, whatever it published before. NotFoundError for a non-CA id. */
  async publish(caCertificateId: string): Promise<CertificateRevocationListRow> {
    // One signer per CA in this process keeps numbers from racing; other processes are caught by the unique index.
    return this.#locks.run(caCertificateId, () => this.#publish(caCertificateId));
  }

  /**
   * The newest CRL, signing one first when it is due (none yet, nextUpdate near, or a revocation
   * it lacks). Should signing fail (a root key kept offline), the newest is served while it is valid.
   */
  async latest(caCertificateId: string): Promise<CertificateRevocationListRow> {
    try {
      return await this.#publishIfDue(caCertificateId);
    } catch (error) {
      const newest = await this.#crls.newest(caCertificateId);
      if (!newest || newest.nextUpdate.getTime() <= Date.now()) throw error;
      this.#logger.warn({ err: error, caCertificateId }, 'could not sign a new CRL; serving the newest, which is still valid');
      return newest;
    }
  }

  /**
   * Publishes for every unexpired CA (of one tenant, or all) that is not revoked, or was revoked
   * so recently that relying parties may still hold its last CRL. Every CA is attempted; failures
   * are logged and raised together at the end.
   */
  async publishAll(tenantId?: string): Promise<CertificateRevocationListRow[]> {
    const now = new Date();
    const cas = await this.#certificates.casPublishingCrls({ tenantId, now, revokedAfter: new Date(now.getTime() - this.#validityMs) });
    const published: CertificateRevocationListRow[] = [];
    const failures: unknown[] = [];
    for (const { id, certificateType } of cas) {
      try {
        published.push(await (certificateType === 'root' ? this.#publishIfDue(id) : this.publish(id)));
      } catch (error) {
        this.#logger.error({ err: error, caCertificateId: id }, 'could not publish the CRL');
        failures.push(error);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, `${failures.length} of ${cas.length} CRLs could not be published`);
    return published;
  }

  /** The newest CRL if it needs no successor yet, else a new one. */
  async #publishIfDue(caCertificateId: string): Promise<CertificateRevocationListRow> {
    const current = await this.#current(caCertificateId);
    if (current) return current;
    return this.#locks.run(caCertificateId, async () => {
      // Whoever held the lock before may have just published one.
      return (await this.#current(caCertificateId)) ?? this.#publish(caCertificateId);
    });
  }

  /** The newest CRL while its nextUpdate is not near and nothing the CA issued was revoked since. */
  async #current(caCertificateId: string): Promise<CertificateRevocationListRow | undefined> {
    const newest = await this.#crls.newest(caCertificateId);
    if (!newest) return undefined;
    const ca = await this.#certificates.find(caCertificateId);
    const marginMs = ca?.certificateType === 'root' ? this.#rootValidityMs / 3 : this.#refreshMarginMs;
    if (newest.nextUpdate.getTime() - Date.now() <= marginMs) return undefined;
    // What the CRL would list if signed at its own thisUpdate: more than it does means a revocation since.
    const listable = await this.#certificates.countRevokedIssuedBy(caCertificateId, newest.thisUpdate);
    return listable > newest.revokedCount ? undefined : newest;
  }

  async #publish(caCertificateId: string): Promise<CertificateRevocationListRow> {
    const issuer = await this.#ca.caSigningIdentity(caCertificateId);
    const validityMs = issuer.row.certificateType === 'root' ? this.#rootValidityMs : this.#validityMs;
    for (let attempt = 1; ; attempt++) {
      const thisUpdate = wholeSeconds(new Date());
      const nextUpdate = new Date(thisUpdate.getTime() + validityMs);
      const next = await this.#crls.nextNumber(caCertificateId);
      const revoked = await this.#certificates.revokedIssuedBy(caCertificateId, thisUpdate);

      const crl = new CertificateRevocationList({
        version: 1, // v2: the list carries extensions
        signature: signatureAlgorithmFor(issuer.signer.algorithm).identifier,
        issuer: issuer.certificate.subject,
        thisUpdate: timeOf(thisUpdate),
        nextUpdate: timeOf(nextUpdate),
        // RFC 5280 5.1.2.6: absent, not empty, when nothing is revoked.
        ...(revoked.length > 0
          ? {
              revokedCertificates: revoked.map(
                (entry) =>
                  new RevokedCertificate({
                    userCertificate: asn1js.Integer.fromBigInt(BigInt(`0x${entry.serialNumber}`)),
                    revocationDate: timeOf(entry.revokedAt!),
                    ...entryExtensionsOf(entry.revocationReason),
                  }),
              ),
            }
          : {}),
        crlExtensions: new Extensions({
          extensions: [authorityKeyIdentifierExtension(issuer.keyId), crlNumberExtension(next)],
        }),
      });
      const der = await signCrl(crl, issuer.signer);

      try {
        const row = await this.#crls.insert({
          tenantId: issuer.row.tenantId,
          caCertificateId,
          crlNumber: next,
          thisUpdate,
          nextUpdate,
          revokedCount: revoked.length,
          der,
        });
        this.#logger.info({ caCertificateId, crlNumber: next, revokedCount: revoked.length }, 'published CRL');
        return row;
      } catch (error) {
        if (!isUniqueViolation(error) || attempt >= maximumNumberAttempts) throw error;
        this.#logger.debug({ caCertificateId, crlNumber: next, attempt }, 'CRL number taken by another publisher; signing again');
      }
    }
  }
}

/** cRLNumber (RFC 5280 section 5.2.3): non-critical, a non-negative INTEGER. */
export function crlNumberExtension(crlNumber: number | bigint): Extension {
  return new Extension({
    extnID: oids.cRLNumber,
    critical: false,
    extnValue: asn1js.Integer.fromBigInt(BigInt(crlNumber)).toBER(),
  });
}

/** reasonCode (RFC 5280 section 5.3.1): non-critical ENUMERATED. */
export function crlReasonExtension(code: number): Extension {
  return new Extension({ extnID: oids.cRLReason, critical: false, extnValue: new asn1js.Enumerated({ value: code }).toBER() });
}

function entryExtensionsOf(reason: string | null): { crlEntryExtensions?: Extensions } {
  const code = statedReasonCode(reason);
  return code === undefined ? {} : { crlEntryExtensions: new Extensions({ extensions: [crlReasonExtension(code)] }) };
}

async function signCrl(crl: CertificateRevocationList, signer: CertificateSigner) {
  const { hash, identifier } = signatureAlgorithmFor(signer.algorithm);
  crl.signatureAlgorithm = identifier;
  // pkijs encodes the TBSCertList as the first element of the whole structure.
  const tbs = new Uint8Array(crl.toSchema(true).valueBlock.value[0]!.toBER());
  const signature = await signer.custody.sign(signer.location, hash, tbs);
  // As for certificates: a faulty signer must not publish a CRL nobody can verify.
  const issuerKey = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: 'der', type: 'spki' });
  if (!verify(hash === 'SHA-384' ? 'sha384' : 'sha256', tbs, { key: issuerKey, dsaEncoding: 'der' }, signature)) {
    throw new Error(`the CRL signature made with ${signer.location} does not verify against its public key`);
  }
  crl.tbsView = tbs;
  crl.signatureValue = new asn1js.BitString({ valueHex: signature });
  return new Uint8Array(crl.toSchema().toBER());
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 section 5.1.2.4). */
function timeOf(date: Date): Time {
  const value = wholeSeconds(date);
  return new Time({ type: value.getUTCFullYear() < 2050 ? TimeType.UTCTime : TimeType.GeneralizedTime, value });
}
