/**
 * A registered device seen on the network becomes a provisioning run: where to reach it and who it
 * must prove to be. What the registration does not say (a serial when only the MAC was registered,
 * or the reverse) is read from the device itself and must not contradict the registration; the run's
 * identify step then checks both again. The device is checked and its run planned as any provisioning
 * request is, with an approver when the registration asks for one.
 */
import type { DeviceAdapter, DeviceCredentials } from '../adapters/device-adapter';
import type { SecretVault } from '../custody/secret-vault';
import { IdentityMismatchError, ValidationError } from '../foundation/errors';
import { parseOrThrow } from '../foundation/validation';
import type { ProvisioningPlanner } from '../provisioning/planner';
import { defaultRunOptions, deviceDescriptorOf, deviceRequestSchema } from '../provisioning/requests';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import type { ProvisionDeviceInput } from '../contracts/provisioning';
import type { DeviceSighting } from '../contracts/zero-touch';
import type { ZeroTouchRegistrationStore } from './registration-store';

export interface ZeroTouchRunPlannerDependencies {
  store: ZeroTouchRegistrationStore;
  vault: SecretVault;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  planner: Pick<ProvisioningPlanner, 'checkCompliant' | 'planProvisioning'>;
}

export class ZeroTouchRunPlanner {
  constructor(private readonly deps: ZeroTouchRunPlannerDependencies) {}

  /** The run that provisions the registration's device where `sighting` saw it. */
  async plan(input: { registrationId: string; sighting: DeviceSighting }): Promise<ProvisionDeviceInput> {
    const { store, vault, adapters, planner } = this.deps;
    const registration = await store.byId(input.registrationId);
    const { tenantId, protocol } = registration;
    const adapter = adapters.get(protocol)!;
    const address = input.sighting.endpoints.find((endpoint) => endpoint.protocol === protocol)?.address ?? input.sighting.ip;
    if (!address) throw new ValidationError(`the device was seen without a ${protocol} address to reach it at`);
    adapter.validateAddress(address);

    const credentials = await vault.read<DeviceCredentials>(tenantId, registration.deviceId, initialCredentialsPurpose);
    let serialNumber = registration.serialNumber ?? input.sighting.serialNumber;
    let macAddress = registration.macAddress ?? input.sighting.macAddress;
    if (!serialNumber || !macAddress) {
      const identity = await adapter.identify({ address, credentials });
      const contradictions = [
        registration.serialNumber && identity.serialNumber !== registration.serialNumber
          ? `serial number ${identity.serialNumber} (registered ${registration.serialNumber})`
          : undefined,
        registration.macAddress && identity.macAddress && identity.macAddress !== registration.macAddress
          ? `MAC address ${identity.macAddress} (registered ${registration.macAddress})`
          : undefined,
      ].filter(Boolean);
      if (contradictions.length > 0) throw new IdentityMismatchError(`device at ${address} reports ${contradictions.join(' and ')}`);
      serialNumber ??= identity.serialNumber;
      macAddress ??= identity.macAddress;
    }
    if (!macAddress) throw new ValidationError(`device at ${address} reports no MAC address and none was registered`);

    // What the device and the sighting said is parsed as a request's device would be, once.
    const device = parseOrThrow(
      deviceRequestSchema([...adapters.keys()]),
      {
        deviceId: registration.deviceId,
        serialNumber,
        macAddress,
        address,
        protocol,
        deviceType: registration.deviceType,
        site: registration.site,
        ...(registration.name ? { name: registration.name } : {}),
      },
      'provisioning request',
      'devices[0]',
    );
    const { devices, templateVersion } = await planner.checkCompliant(tenantId, {
      templateId: registration.templateId,
      options: defaultRunOptions,
      devices: [device],
    });
    const [run] = await planner.planProvisioning({
      tenantId,
      templateId: registration.templateId,
      templateVersion,
      provisioningMethod: 'automatic',
      options: defaultRunOptions,
      requestedBy: `zero-touch:${registration.id}`,
      approvalRequired: registration.requireApproval,
      devices: devices.map((checked) => ({ device: deviceDescriptorOf(checked), hasInitialCredentials: credentials !== undefined })),
    });
    return run!;
  }
}
