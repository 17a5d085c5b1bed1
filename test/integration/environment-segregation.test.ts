/**
 * Production and test kept apart: an installation's environment names its CAs, its certificates
 * chain only to its own root, and a start against a database or Temporal namespace of another
 * environment refuses. Real databases (embedded and server), the real dev server, OpenSSL as judge.
 */
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../foundation/errors';
import { createServiceParts, type ServiceParts } from '../../service/parts';
import { startService } from '../../service/main';
import { namespaceEnvironmentKey } from '../../service/temporal';
import { createServerDatabaseUrl, databaseKinds, type DatabaseKind } from '../support/database';
import { makeCsr, verifyChain } from '../support/openssl';
import { testConfig, testLogger } from '../support/service';
import { createTemporalTestEnvironment } from '../support/temporal';

/** One installation's settings: its data directory, database and key-encryption key stay its own across starts. */
async function installation(database: DatabaseKind): Promise<Record<string, string>> {
  const settings: Record<string, string> = {
    DATA_DIR: mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'installation-')),
    KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  if (database === 'server') settings.DATABASE_URL = await createServerDatabaseUrl();
  return settings;
}

async function partsOf(settings: Record<string, string>, environment: string): Promise<ServiceParts> {
  return createServiceParts(await testConfig({ environment: { ...settings, ENVIRONMENT: environment } }), testLogger);
}

async function deviceCertificate(parts: ServiceParts): Promise<{ rootPem: string; intermediatePem: string; leafPem: string }> {
  const device = { deviceId: 'cam-1', serialNumber: 'SN-0001', macAddress: '00:11:22:AA:BB:CC', address: '10.0.0.5:8443', site: 'hq' };
  const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1', subjectAltName: 'IP:10.0.0.5,URI:urn:dev:mac:001122aabbcc' });
  const leaf = await parts.ca.issueDeviceCertificate({ tenantId: 'acme', device, csrPem });
  return {
    rootPem: (await parts.ca.ensureRootCa('acme')).pem,
    intermediatePem: (await parts.ca.ensureSiteIntermediateCa('acme', 'hq')).pem,
    leafPem: leaf.pem,
  };
}

describe.each(databaseKinds)('environments on the %s database', (database) => {
  it('records the environment at the first start and refuses a start as another environment, naming both', async () => {
    const settings = await installation(database);
    await (await partsOf(settings, 'test')).close();

    const refusal: unknown = await partsOf(settings, 'production').catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ConfigurationError);
    expect((refusal as Error).message).toMatch(/ENVIRONMENT: the database belongs to the test environment, but this installation is configured as production/);

    // Its own environment still starts, again and again.
    await (await partsOf(settings, 'test')).close();
  });
});

describe('certificate authorities of two environments', () => {
  let production: ServiceParts;
  let test: ServiceParts;

  beforeAll(async () => {
    production = await partsOf(await installation('embedded'), 'production');
    test = await partsOf(await installation('embedded'), 'test');
  });
  afterAll(async () => {
    await production?.close();
    await test?.close();
  });

  it('names the environment in every CA of a test installation and leaves production names as they were', async () => {
    expect((await test.ca.ensureRootCa('acme')).subjectDn).toBe('CN=acme Root CA (test),O=acme');
    expect((await test.ca.ensureSiteIntermediateCa('acme', 'hq')).subjectDn).toBe('CN=hq Intermediate CA (test),OU=hq,O=acme');
    expect((await test.ca.ensureServicesIntermediateCa('acme')).subjectDn).toBe('CN=acme Services CA (test),O=acme');
    expect((await production.ca.ensureRootCa('acme')).subjectDn).toBe('CN=acme Root CA,O=acme');
  });

  it("never chains a test installation's device certificate to the production root (openssl verify)", async () => {
    const inTest = await deviceCertificate(test);
    const inProduction = await deviceCertificate(production);

    // Each verifies against its own root...
    expect(verifyChain({ rootPem: inTest.rootPem, intermediatePems: [inTest.intermediatePem], leafPem: inTest.leafPem })).toMatch(/OK/);
    expect(verifyChain({ rootPem: inProduction.rootPem, intermediatePems: [inProduction.intermediatePem], leafPem: inProduction.leafPem })).toMatch(/OK/);
    // ...and never against the other environment's, whichever intermediates are offered.
    for (const intermediatePems of [[inTest.intermediatePem], [inTest.intermediatePem, inProduction.intermediatePem]]) {
      expect(() => verifyChain({ rootPem: inProduction.rootPem, intermediatePems, leafPem: inTest.leafPem })).toThrow(/unable to get (local )?issuer certificate/);
    }
    expect(() => verifyChain({ rootPem: inTest.rootPem, intermediatePems: [inProduction.intermediatePem], leafPem: inProduction.leafPem })).toThrow(
      /unable to get (local )?issuer certificate/,
    );
  });
});

describe('the Temporal namespace of an environment', () => {
  let temporal: TestWorkflowEnvironment;

  beforeAll(async () => {
    temporal = await createTemporalTestEnvironment();
  });
  afterAll(async () => {
    await temporal?.teardown();
  });

  /** The API alone, against the dev server's `default` namespace, with nothing else listening. */
  async function startApi(environment: string) {
    const config = await testConfig({
      environment: {
        ENVIRONMENT: environment,
        SERVICE_ROLES: 'api',
        PORT: '0',
        EST_PORT: '0',
        METRICS_PORT: '0',
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_NAMESPACE: 'default',
      },
    });
    return startService(config, testLogger);
  }

  async function recordedEnvironment(): Promise<string | undefined> {
    const described = await temporal.connection.workflowService.describeNamespace({ namespace: 'default' });
    return described.namespaceInfo?.data?.[namespaceEnvironmentKey];
  }

  it('records the environment in the namespace at the first start and refuses a start as another environment', async () => {
    const first = await startApi('test');
    await first.stop();
    expect(await recordedEnvironment()).toBe('test');

    // A fresh production database: only the namespace is the other environment's.
    await expect(startApi('production')).rejects.toThrow(
      /ENVIRONMENT: the namespace default belongs to the test environment, but this installation is configured as production/,
    );
    expect(await recordedEnvironment()).toBe('test');

    const again = await startApi('test');
    await again.stop();
  });
});
