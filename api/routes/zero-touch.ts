/**
 * Zero-touch provisioning: pre-registering expected devices, following each registration's
 * workflow, enrolment tokens (and their QR codes) for installers, and the DHCP lease events the
 * site's DHCP server reports.
 */
import QRCode from 'qrcode';
import { pagesMountPath } from '../pages';
import { z } from 'zod';
import { dhcpLeaseEventSchema, dhcpObservation } from '../../discovery/dhcp-events';
import { identifierPattern } from '../../registry/identifiers';
import { FailedAuthenticationThrottle, type FailedAuthenticationLimits } from '../../access/failed-authentications';
import { TooManyRequestsError, UnauthenticatedError } from '../../foundation/errors';
import type { DeviceSighting } from '../../contracts/zero-touch';
import { registrationRequestSchema, type ZeroTouchRegistrations } from '../../zero-touch/registrations';
import { operation, type AnyOperation } from '../operation';

const base = '/api/v1/provisioning/zero-touch';
const timestamp = z.iso.datetime({ offset: true });
const deviceParams = z.object({ deviceId: z.string().regex(identifierPattern, 'must be a device id') });

const sightingSchema = z.object({
  via: z.enum(['discovery', 'dhcp', 'enrolment-token']),
  observedAt: timestamp,
  ip: z.string().optional(),
  macAddress: z.string().optional(),
  serialNumber: z.string().optional(),
  endpoints: z.array(z.object({ protocol: z.string(), address: z.string() })),
});

const registrationResponse = z
  .object({
    id: z.uuid(),
    deviceId: z.string(),
    serialNumber: z.string().nullable(),
    macAddress: z.string().nullable(),
    protocol: z.string(),
    deviceType: z.string(),
    site: z.string(),
    templateId: z.string(),
    name: z.string().nullable(),
    requireApproval: z.boolean(),
    expiresAt: timestamp,
    createdAt: timestamp,
    workflowId: z.string(),
    status: z
      .object({
        registrationId: z.uuid(),
        deviceId: z.string(),
        state: z.enum(['waiting', 'provisioning', 'provisioned', 'failed', 'expired', 'cancelled']),
        expiresAt: timestamp,
        sightings: z.array(sightingSchema),
        mismatches: z.array(z.object({ at: timestamp, via: z.string(), reason: z.string() })),
        provisioningId: z.string().optional(),
        error: z.string().optional(),
        completedAt: timestamp.optional(),
      })
      .optional(),
  })
  .meta({ id: 'ZeroTouchRegistration' });

export function zeroTouchOperations(deps: {
  registrations: ZeroTouchRegistrations;
  protocols: string[];
  /** Wrong tokens a client address may present before it must wait, as for failed EST logins. */
  failedEnrolmentTokens: FailedAuthenticationLimits;
  publicBaseUrl: () => string | undefined;
}): AnyOperation[] {
  const { registrations } = deps;
  const failedTokens = new FailedAuthenticationThrottle(deps.failedEnrolmentTokens);
  return [
    operation({
      operationId: 'registerZeroTouchDevices',
      method: 'post',
      path: base,
      summary: 'Pre-register devices by serial and/or MAC; each is provisioned with no human step when it appears',
      tag: 'zero-touch',
      permission: 'provisioning:write',
      body: registrationRequestSchema(deps.protocols),
      responses: {
        202: { description: 'Registered; a workflow now waits for each device', schema: z.object({ registrations: z.array(registrationResponse) }) },
        409: { description: 'A device, serial or MAC is already registered' },
      },
      async handle({ res, tenantId, principal, body }) {
        res.status(202).json({ registrations: await registrations.register(tenantId, body, principal.subject) });
      },
    }),
    operation({
      operationId: 'getZeroTouchRegistration',
      method: 'get',
      path: `${base}/{deviceId}`,
      summary: 'A registration and where its workflow stands (waiting, provisioning, provisioned, mismatches)',
      tag: 'zero-touch',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The registration', schema: registrationResponse } },
      async handle({ res, tenantId, params }) {
        res.json(await registrations.get(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'cancelZeroTouchRegistration',
      method: 'post',
      path: `${base}/{deviceId}/cancel`,
      summary: 'Stop waiting for a device',
      tag: 'zero-touch',
      permission: 'provisioning:write',
      params: deviceParams,
      body: z.object({ reason: z.string().min(1).max(200) }).strict(),
      responses: { 202: { description: 'The registration ends' } },
      async handle({ res, tenantId, params, body }) {
        await registrations.cancel(tenantId, params.deviceId, body.reason);
        res.status(202).end();
      },
    }),
    operation({
      operationId: 'issueZeroTouchEnrolmentToken',
      method: 'post',
      path: `${base}/{deviceId}/enrolment-token`,
      summary: 'A short-lived, single-use enrolment token for the installer, with its QR code (SVG and PNG)',
      tag: 'zero-touch',
      permission: 'provisioning:write',
      params: deviceParams,
      responses: {
        201: {
          description: 'The token replaces any earlier one; it is shown only here',
          schema: z.object({
            token: z.string(),
            expiresAt: timestamp,
            enrolUrl: z.string(),
            qrCode: z.object({ svg: z.string(), pngBase64: z.string() }),
          }),
        },
      },
      async handle({ res, tenantId, params }) {
        const { token, expiresAt } = await registrations.issueEnrolmentToken(tenantId, params.deviceId);
        // The enrolment page; the token rides in the fragment, which browsers and proxies never send on.
        const enrolUrl = `${deps.publicBaseUrl() ?? ''}${pagesMountPath}/enrol#token=${token}`;
        const [svg, png] = await Promise.all([
          QRCode.toString(enrolUrl, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }),
          QRCode.toBuffer(enrolUrl, { type: 'png', errorCorrectionLevel: 'M', margin: 2, scale: 6 }),
        ]);
        res.status(201).json({ token, expiresAt: expiresAt.toISOString(), enrolUrl, qrCode: { svg, pngBase64: png.toString('base64') } });
      },
    }),
    operation({
      operationId: 'enrolWithZeroTouchToken',
      method: 'post',
      path: `${base}/enrol`,
      summary: "An installer's phone presents the enrolment token and the device's address; provisioning starts",
      tag: 'zero-touch',
      // The single-use token is the credential: the phone holds no API key.
      permission: 'public',
      body: z.object({ token: z.string().min(10).max(200), address: z.string().trim().min(1).max(255) }).strict(),
      responses: {
        202: { description: 'The registration was told where the device is', schema: z.object({ deviceId: z.string() }) },
        401: { description: 'The token is unknown, used or expired' },
        429: { description: 'Too many wrong tokens from this address; see Retry-After' },
      },
      async handle({ req, res, body }) {
        // Guessing tokens costs a guesser its address's budget; an installer with the right one never waits.
        const throttleKeys = [`address:${req.ip}`];
        const waitSeconds = failedTokens.retryAfterSeconds(throttleKeys);
        if (waitSeconds !== undefined) throw new TooManyRequestsError('too many wrong enrolment tokens; try again later', waitSeconds);
        try {
          const { deviceId } = await registrations.redeemEnrolmentToken(body.token, body.address);
          res.status(202).json({ deviceId });
        } catch (error) {
          if (error instanceof UnauthenticatedError) failedTokens.recordFailure(throttleKeys);
          throw error;
        }
      },
    }),
    operation({
      operationId: 'reportDhcpLease',
      method: 'post',
      path: '/api/v1/discovery/dhcp-events',
      summary: "A lease event from the site's DHCP server (dnsmasq --dhcp-script hook): pre-registered devices it names start provisioning",
      tag: 'zero-touch',
      permission: 'discovery:report',
      body: dhcpLeaseEventSchema,
      responses: {
        202: { description: 'Recorded; the registrations it matched', schema: z.object({ matched: z.array(z.string()) }) },
      },
      async handle({ res, tenantId, body }) {
        if (body.event === 'del') {
          res.status(202).json({ matched: [] });
          return;
        }
        const observation = dhcpObservation(body);
        const sighting: DeviceSighting = {
          via: 'dhcp',
          observedAt: observation.observedAt,
          ...(observation.ip ? { ip: observation.ip } : {}),
          ...(observation.macAddress ? { macAddress: observation.macAddress } : {}),
          endpoints: observation.endpoints,
        };
        const { matched } = await registrations.offerSightings(tenantId, [sighting]);
        res.status(202).json({ matched: matched.map((registration) => registration.deviceId) });
      },
    }),
  ];
}
