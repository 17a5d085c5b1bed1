/**
 * The independent judges of PKI objects that `npm test` installs under .tools/pki-lint (see
 * scripts/setup.mjs): zlint for certificates, pkilint for certificates, CRLs and OCSP responses,
 * and Go's crypto/x509 parsing certificates and CRLs. Each returns what it objects to, one line per
 * finding; an empty list means the object passed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const toolsDir = fileURLToPath(new URL('../../.tools/pki-lint/', import.meta.url));
const tool = (name: string) => path.join(toolsDir, name);
const pkilint = (name: string) => path.join(toolsDir, 'venv', 'bin', name);

/** RFC lints only: the CA/B Forum, browser and S/MIME profiles are for the Web PKI, which this CA is not. */
const zlintSources = 'RFC3279,RFC5280,RFC5480,RFC5891,RFC8813';

/**
 * Findings that are the linter's mistake, not the object's. pkilint checks SAN URIs with a URL
 * validator that wants `scheme://host`, so the RFC 9039 device URN every device certificate carries
 * (`urn:dev:mac:...`, a scheme and a scheme-specific part, as RFC 5280 section 4.2.1.6 asks) is
 * reported as invalid; zlint's SAN URI lint accepts it.
 */
const linterMistakes = [/^pkilint ERROR pkix\.invalid_uri_syntax at .*uniformResourceIdentifier: Invalid URI syntax: "urn:dev:mac:[0-9a-f]{12}"$/];

export type PkiObject =
  | { kind: 'certificate'; der: Uint8Array }
  | { kind: 'crl'; der: Uint8Array; authority: boolean }
  | { kind: 'ocsp-response'; der: Uint8Array };

/** Findings of every linter that reads this kind of object, each line naming its linter. */
export async function lintFindings(object: PkiObject): Promise<string[]> {
  const directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'pki-lint-'));
  const file = path.join(directory, 'object.der');
  writeFileSync(file, object.der);
  try {
    switch (object.kind) {
      case 'certificate':
        return [...(await zlint(file)), ...(await pkilintFindings('lint_pkix_cert', ['lint'], file)), ...(await goParse(file))];
      case 'crl':
        return [
          ...(await pkilintFindings('lint_crl', ['lint', '-t', object.authority ? 'ARL' : 'CRL', '-p', 'PKIX'], file)),
          ...(await goParse(file)),
        ];
      case 'ocsp-response':
        return await pkilintFindings('lint_ocsp_response', ['lint'], file);
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

async function zlint(file: string): Promise<string[]> {
  const { stdout } = await run(tool('zlint'), ['-format', 'der', '-includeSources', zlintSources, file], { maxBuffer: 16 * 1024 * 1024 });
  const results = JSON.parse(stdout) as Record<string, { result: string; details?: string }>;
  return Object.entries(results)
    .filter(([, { result }]) => ['warn', 'error', 'fatal'].includes(result))
    .map(([name, { result, details }]) => `zlint ${result} ${name}${details ? `: ${details}` : ''}`);
}

/** pkilint exits non-zero when it reports anything, so its output is read either way. */
async function pkilintFindings(linter: string, args: string[], file: string): Promise<string[]> {
  const { stdout } = await run(pkilint(linter), [...args, '-s', 'WARNING', '-f', 'JSON', '--document-format', 'DER', file], {
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string }) => {
    if (!error.stdout) throw new Error(`${linter} failed: ${String(error.stderr ?? error).slice(-600)}`);
    return { stdout: error.stdout };
  });
  const report = JSON.parse(stdout) as { results: { validator: string; node_path: string; finding_descriptions: { severity: string; code: string; message?: string }[] }[] };
  return report.results
    .flatMap((result) =>
      result.finding_descriptions.map(
        (finding) => `pkilint ${finding.severity} ${finding.code} at ${result.node_path}${finding.message ? `: ${finding.message}` : ''}`,
      ),
    )
    .filter((finding) => !linterMistakes.some((mistake) => mistake.test(finding)));
}

async function goParse(file: string): Promise<string[]> {
  try {
    await run(tool('x509-parse'), [file]);
    return [];
  } catch (error) {
    return [`crypto/x509: ${(error as { stdout?: string }).stdout?.trim() ?? String(error)}`];
  }
}
