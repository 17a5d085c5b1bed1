/**
 * The renewal workflows of devices' certificates, seen from outside: every certificate a device
 * starts using is handed to its device's renewal workflow (started on first use, told of the new
 * certificate afterwards), and operators can ask for a renewal now or read where one stands.
 */
import type { Client } from '@temporalio/client';
import type { CertificateRow } from '../db/schema';
import { fromWorkflowError } from '../foundation/workflow-errors';
import type { renewDeviceCertificate } from '../workflows/certificate-renewal';
import {
  certificateReplacedSignal,
  renewNowSignal,
  renewalStatusQuery,
  renewalWorkflowId,
  type RenewableCertificate,
  type RenewalStatus,
} from '../contracts/certificates';
import { provisioningSearchAttributes as attributes } from '../contracts/provisioning';

export interface CertificateRenewalsOptions {
  client: Client;
  taskQueue: string;
  /** Fraction of a certificate's lifetime after which it is renewed. */
  renewAtFraction: number;
  /** False where the cluster has no custom search attributes (the time-skipping test server). */
  searchAttributes?: boolean;
}

export function renewableCertificateOf(row: CertificateRow): RenewableCertificate {
  return {
    certificateId: row.id,
    serialNumber: row.serialNumber,
    issuedAt: row.issuedAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
  };
}

export class CertificateRenewals {
  readonly #options: CertificateRenewalsOptions;

  constructor(options: CertificateRenewalsOptions) {
    this.#options = options;
  }

  /** Signal-with-start: one renewal workflow per device, whatever certificate it holds now. */
  async track(row: CertificateRow): Promise<void> {
    if (row.certificateType !== 'device' || !row.deviceId) return;
    const certificate = renewableCertificateOf(row);
    await this.#options.client.workflow.signalWithStart<typeof renewDeviceCertificate, [RenewableCertificate]>('renewDeviceCertificate', {
      workflowId: renewalWorkflowId(row.tenantId, row.deviceId),
      taskQueue: this.#options.taskQueue,
      args: [{ tenantId: row.tenantId, deviceId: row.deviceId, certificate, renewAtFraction: this.#options.renewAtFraction }],
      signal: certificateReplacedSignal,
      signalArgs: [certificate],
      ...(this.#options.searchAttributes === false
        ? {}
        : {
            typedSearchAttributes: [
              { key: attributes.tenantId, value: row.tenantId },
              { key: attributes.deviceId, value: row.deviceId },
            ],
          }),
    });
  }

  async renewNow(tenantId: string, deviceId: string, reason: string): Promise<void> {
    await this.#handle(tenantId, deviceId, (handle) => handle.signal(renewNowSignal, { reason }));
  }

  async status(tenantId: string, deviceId: string): Promise<RenewalStatus> {
    return this.#handle(tenantId, deviceId, (handle) => handle.query(renewalStatusQuery));
  }

  async #handle<T>(tenantId: string, deviceId: string, use: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<T>): Promise<T> {
    try {
      return await use(this.#options.client.workflow.getHandle(renewalWorkflowId(tenantId, deviceId)));
    } catch (error) {
      throw fromWorkflowError(error, { what: `the certificate renewal of ${deviceId}`, notFound: `device ${deviceId} has no certificate renewal in progress` });
    }
  }
}
