/**
 * Where an ONVIF device lives: `host[:port]` of its device service over plain HTTP (port 80 unless
 * given), the way installers read it off the camera's label or a discovery answer (see ../host-port).
 */
import { parseHostPort, type HostPort } from '../host-port';

export { authorityOf } from '../host-port';

export type OnvifEndpoint = HostPort;

export const defaultOnvifHttpPort = 80;

export function parseOnvifAddress(address: string): OnvifEndpoint {
  return parseHostPort(address, defaultOnvifHttpPort);
}
