// The worker's workflow bundle entry point: every workflow type the service runs.
export { provisionDevice } from './provision-device';
export { evaluateAlerts } from './alert-evaluation';
export { bulkProvision } from './bulk-provision';
export { renewDeviceCertificate } from './certificate-renewal';
export { rotateSiteIntermediate } from './intermediate-rotation';
export { publishCrls } from './crl-publication';
export { zeroTouchProvisioning } from './zero-touch';
export { discoverySweep } from './discovery-sweep';
export { configRollout } from './configuration-rollout';
export { configurationDriftCheck } from './configuration-drift';
export { backUpCertificateAuthority } from './ca-backup';
export { healthSweep } from './health-sweep';
export { rotateDeviceCredentials, credentialRotationSweep } from './credential-rotation';
export { decommissionDevice } from './decommission-device';
export { replaceDevice, reprovisionDevice } from './device-replacement';
