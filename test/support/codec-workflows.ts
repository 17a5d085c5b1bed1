/**
 * A workflow for the encrypted-history tests: its input, an activity's input and result, and its
 * own result all carry the same secret, so every kind of payload in the history holds it.
 */
import { proxyActivities } from '@temporalio/workflow';

export interface DeviceSecretInput {
  deviceId: string;
  credentials: { username: string; password: string };
}

export interface CodecTestActivities {
  echoDeviceSecret(input: DeviceSecretInput): Promise<DeviceSecretInput>;
}

const { echoDeviceSecret } = proxyActivities<CodecTestActivities>({ startToCloseTimeout: '10s' });

export async function returnDeviceSecret(input: DeviceSecretInput): Promise<DeviceSecretInput> {
  return echoDeviceSecret(input);
}
