/**
 * Checks a tenant's certificates as stored: each one's signature verifies under its issuer's
 * public key and names that issuer, up to a self-signed root. A restore runs it before it trusts
 * what it restored.
 */
import { X509Certificate } from 'node:crypto';
import type { CertificateRow } from './certificate-store';

export interface CertificateChainProblem {
  certificateId: string;
  problem: string;
}

export function certificateChainProblems(rows: Pick<CertificateRow, 'id' | 'pem' | 'issuerCertificateId' | 'certificateType'>[]): CertificateChainProblem[] {
  const parsed = new Map<string, X509Certificate>();
  const problems: CertificateChainProblem[] = [];
  for (const row of rows) {
    try {
      parsed.set(row.id, new X509Certificate(row.pem));
    } catch {
      problems.push({ certificateId: row.id, problem: 'cannot be parsed' });
    }
  }
  for (const row of rows) {
    const certificate = parsed.get(row.id);
    if (!certificate) continue;
    if (!row.issuerCertificateId) {
      if (row.certificateType !== 'root') problems.push({ certificateId: row.id, problem: 'names no issuer and is not a root' });
      else if (!certificate.checkIssued(certificate) || !certificate.verify(certificate.publicKey)) {
        problems.push({ certificateId: row.id, problem: 'root is not validly self-signed' });
      }
      continue;
    }
    const issuer = parsed.get(row.issuerCertificateId);
    if (!issuer) problems.push({ certificateId: row.id, problem: `issuer ${row.issuerCertificateId} is missing` });
    else if (!certificate.checkIssued(issuer)) problems.push({ certificateId: row.id, problem: `does not name issuer ${row.issuerCertificateId} as its issuer` });
    else if (!certificate.verify(issuer.publicKey)) problems.push({ certificateId: row.id, problem: `signature does not verify under issuer ${row.issuerCertificateId}` });
  }
  return problems;
}
