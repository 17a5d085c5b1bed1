/**
 * How the simulated devices decide that a certificate chains to one of their trust anchors, as
 * embedded TLS stacks do that take any CA certificate as an anchor, self-signed or not: from the
 * certificate, through the CA certificates presented with it, to an installed anchor, every one
 * valid now. A device given an intermediate as its anchor so accepts what that intermediate issued
 * and nothing else under the same root.
 */
import type { X509Certificate } from 'node:crypto';

/** End entity, at most two intermediates, anchor. */
const maximumPathLength = 4;

/** The anchor `certificate` chains to, or why it does not (`what` names the certificate in the reason). */
export function anchorOf(
  certificate: X509Certificate,
  presented: X509Certificate[],
  anchors: X509Certificate[],
  options: { now: number; what: string },
): { anchor: X509Certificate } | { refusal: string } {
  if (anchors.length === 0) return { refusal: 'the device holds no trust anchors to check it against' };
  let current = certificate;
  for (let depth = 1; depth < maximumPathLength; depth++) {
    const anchor = anchors.find((candidate) => issued(candidate, current));
    if (anchor) {
      const expired = outsideValidity(anchor, 'the trust anchor', options.now);
      return expired ? { refusal: expired } : { anchor };
    }
    const issuer = presented.find((candidate) => candidate !== current && candidate.ca && issued(candidate, current));
    if (!issuer) break;
    const expired = outsideValidity(issuer, `the issuer ${issuer.subject.replace(/\n/g, ', ')}`, options.now);
    if (expired) return { refusal: expired };
    current = issuer;
  }
  return { refusal: `${options.what} does not chain to a trust anchor of this device` };
}

/** Why `certificate` is not valid at `now`, or undefined when it is. */
export function outsideValidity(certificate: X509Certificate, what: string, now: number): string | undefined {
  if (now >= Date.parse(certificate.validFrom) && now <= Date.parse(certificate.validTo)) return undefined;
  return `${what} is outside its validity (${certificate.validFrom} – ${certificate.validTo})`;
}

function issued(issuer: X509Certificate, subject: X509Certificate): boolean {
  return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
}
