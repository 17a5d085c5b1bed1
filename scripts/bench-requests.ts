/** What the CA benchmarks ask for: device CSRs and addresses made up for device number `index`. */
import { sign, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import { AlgorithmIdentifier, CertificationRequest, PublicKeyInfo } from 'pkijs';
import { buildName } from '../x509/distinguished-name';
import { oids } from '../x509/oids';
import { toPem } from '../x509/pem';

/** A locally administered MAC address, unique per index. */
export function macOf(index: number): string {
  const bytes = [0x02, 0x00, (index >> 24) & 255, (index >> 16) & 255, (index >> 8) & 255, index & 255];
  return bytes.map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}

/** The device the CA is asked to certify as number `index` of site `hq`. */
export function benchDevice(index: number) {
  return {
    deviceId: `bench-${index}`,
    serialNumber: `SN-${index}`,
    macAddress: macOf(index),
    address: `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}:443`,
    site: 'hq',
  };
}

/** A PKCS#10 request for `deviceId`, signed with the given P-256 device key. */
export function csrFor(deviceId: string, key: { spki: Buffer; privateKey: KeyObject }): string {
  const csr = new CertificationRequest({
    version: 0,
    subject: buildName([{ type: 'commonName', value: deviceId }]),
    subjectPublicKeyInfo: PublicKeyInfo.fromBER(key.spki),
  });
  csr.signatureAlgorithm = new AlgorithmIdentifier({ algorithmId: oids.ecdsaWithSha256 });
  const tbs = new Uint8Array(csr.toSchema(true).valueBlock.value[0]!.toBER());
  csr.tbsView = tbs;
  csr.signatureValue = new asn1js.BitString({ valueHex: sign('sha256', tbs, { key: key.privateKey, dsaEncoding: 'der' }) });
  return toPem(new Uint8Array(csr.toSchema().toBER()), 'CERTIFICATE REQUEST');
}
