/**
 * Where an OSDP reader lives: the serial port of the RS-485 bus and the reader's address on it,
 * optionally with the bus speed:
 *
 *   /dev/ttyUSB0@0x65             PD address 0x65 at the default 9600 baud
 *   /dev/ttyUSB0@101?baud=115200  the same PD address in decimal, bus at 115200 baud
 *
 * The port is an absolute device path; the PD address is 0–126 (0x7F is broadcast and never names
 * one reader), decimal or 0x-hex; the baud rate is one OSDP readers use.
 */
import { ValidationError } from '../../foundation/errors';
import { broadcastAddress } from './frame';
import { osdpBaudRates, type OsdpBaudRate } from './protocol';

export interface ReaderAddress {
  portPath: string;
  pdAddress: number;
  baudRate: OsdpBaudRate;
}

export const defaultBaudRate: OsdpBaudRate = 9600;

const addressPattern = /^(\/[A-Za-z0-9._\/-]+)@(0x[0-9a-fA-F]{1,2}|\d{1,3})(?:\?baud=(\d{1,7}))?$/;

export function parseReaderAddress(address: string): ReaderAddress {
  const invalid = (reason: string) =>
    new ValidationError(`OSDP reader address ${JSON.stringify(address)} is invalid: ${reason}`, {
      fields: [{ field: 'address', reason }],
    });
  const match = addressPattern.exec(address);
  if (!match) throw invalid('must be <serial port path>@<PD address>[?baud=<rate>], e.g. /dev/ttyUSB0@0x65 or /dev/ttyUSB0@101?baud=9600');
  const [, portPath, pdAddressText, baudText] = match;
  if (portPath.split('/').some((segment) => segment === '..')) throw invalid('serial port path must not contain ".."');
  const pdAddress = Number(pdAddressText);
  if (pdAddress >= broadcastAddress) throw invalid('PD address must be 0–126 (0x00–0x7E); 0x7F is the broadcast address');
  const baudRate = baudText === undefined ? defaultBaudRate : Number(baudText);
  if (!(osdpBaudRates as readonly number[]).includes(baudRate)) throw invalid(`baud rate must be one of ${osdpBaudRates.join(', ')}`);
  return { portPath, pdAddress, baudRate: baudRate as OsdpBaudRate };
}

export function formatReaderAddress({ portPath, pdAddress, baudRate }: ReaderAddress): string {
  const base = `${portPath}@0x${pdAddress.toString(16).padStart(2, '0')}`;
  return baudRate === defaultBaudRate ? base : `${base}?baud=${baudRate}`;
}
