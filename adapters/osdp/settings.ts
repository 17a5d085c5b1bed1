/**
 * Configuration settings of OSDP card readers. The secure channel with a per-device SCBK is not a
 * choice: the key is generated and installed by the adapter (never part of the settings), and a
 * reader left accepting SCBK-D could be re-keyed by anyone on the bus, so the template states the
 * policy explicitly and the adapter enforces it.
 */
import { z } from 'zod';
import type { BuiltInTemplate, ProtocolSettings } from '../device-adapter';
import { osdpBaudRates } from './protocol';

export const osdpReaderSettings = z
  .object({
    /**
     * Address the reader answers on once configured (COMSET when it differs from the current one);
     * absent keeps the address it has, which suits templates shared by the readers of one bus.
     */
    pdAddress: z.int().min(0).max(0x7e).optional(),
    /** Bus speed the reader uses once configured; absent keeps the current one. */
    baudRate: z.literal(osdpBaudRates).optional(),
    secureChannel: z
      .object({
        /** Only `true`: readers are provisioned with their own SCBK and their install mode closed. */
        required: z.literal(true),
      })
      .strict(),
  })
  .strict();

export type OsdpReaderSettings = z.infer<typeof osdpReaderSettings>;

export const osdpProtocolSettings: ProtocolSettings = {
  schema: osdpReaderSettings,
  // Readers hold no X.509 certificate: nothing in these settings depends on one.
  requiresDeviceCertificate: () => undefined,
};

/** A built-in template: own SCBK, install mode closed, address and speed left as they are. */
export const defaultOsdpReaderSettings: OsdpReaderSettings = {
  secureChannel: { required: true },
};

export const osdpBuiltInTemplates: readonly BuiltInTemplate[] = [
  {
    id: 'osdp-reader',
    name: 'OSDP card reader',
    description: 'Per-device secure channel key (SCBK) installed and install mode closed; bus address and speed unchanged.',
    deviceType: 'card_reader',
    body: defaultOsdpReaderSettings,
  },
];
