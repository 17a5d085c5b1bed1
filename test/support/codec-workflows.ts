/**
 * A workflow for the encrypted-history tests: its input, an activity's input and result, and its
 * own result all carry the same secret, so every kind of payload in the history holds it; and one
 * whose failure message quotes it.
 */
import { proxyActivities } from '@temporalio/workflow';

export interface DeviceSecretInput {
  deviceId: string;
  credentials: { username: string; password: string };
}

export interface CodecTestActivities {
  echoDeviceSecret(input: DeviceSecretInput): Promise<DeviceSecretInput>;
  /** Fails, quoting the secret in its message, as a device's error answer might. */
  refuseDeviceSecret(input: DeviceSecretInput): Promise<never>;
}

const { echoDeviceSecret, refuseDeviceSecret } = proxyActivities<CodecTestActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } });

export async function returnDeviceSecret(input: DeviceSecretInput): Promise<DeviceSecretInput> {
  return echoDeviceSecret(input);
}

/** Fails with the activity's failure, whose message quotes the secret. */
export async function failWithDeviceSecret(input: DeviceSecretInput): Promise<never> {
  return refuseDeviceSecret(input);
}
