import tls from 'node:tls';

/** A loopback port nothing listens on (it was free a moment ago). */
export { freeLoopbackPort } from '../../scripts/postgres-server';

/** SHA-256 (hex) of the certificate a TLS server presents, or undefined when it serves none. */
export function presentedCertificateFingerprint(host: string, port = 443): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, timeout: 3000 }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256.replace(/:/g, '').toLowerCase());
      socket.end();
    });
    socket.on('error', () => resolve(undefined));
    socket.on('timeout', () => {
      socket.destroy();
      resolve(undefined);
    });
  });
}
