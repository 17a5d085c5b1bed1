/**
 * The published layout of a device list: which columns a CSV or Excel file may have, and how its
 * header row is matched to them. The templates, the reader and the documentation all come from here.
 */
import { deviceTypes } from '../provisioning/requests';
import { ValidationError, type FieldProblem } from '../foundation/errors';

export interface DeviceSheetColumn {
  name: string;
  required: boolean;
  description: string;
  example: string;
}

export const deviceSheetColumns = [
  {
    name: 'serialNumber',
    required: true,
    description: 'Serial number as printed on the device; the device must report the same one.',
    example: 'CAM-0001',
  },
  {
    name: 'macAddress',
    required: true,
    description: 'MAC address of the management interface, e.g. 00:1a:2b:3c:4d:5e; the device must report the same one.',
    example: '00:1a:2b:3c:4d:5e',
  },
  {
    name: 'address',
    required: true,
    description: 'Where the device answers now: host name or IP address, optionally followed by :port.',
    example: '192.0.2.10:443',
  },
  {
    name: 'protocol',
    required: false,
    description: 'How the service talks to the device. Default: https.',
    example: 'https',
  },
  {
    name: 'deviceType',
    required: false,
    description: `One of ${deviceTypes.join(', ')}. Default: other.`,
    example: 'camera',
  },
  {
    name: 'site',
    required: true,
    description: 'Identifier of the site the device belongs to.',
    example: 'hq',
  },
  {
    name: 'name',
    required: false,
    description: 'Display name, up to 120 characters.',
    example: 'Lobby camera 1',
  },
  {
    name: 'deviceId',
    required: false,
    description: 'Identifier of the device in the registry. Default: the serial number.',
    example: 'lobby-cam-1',
  },
  {
    name: 'username',
    required: false,
    description: "User name of the device's initial (factory) credentials; give both username and password, or neither.",
    example: 'admin',
  },
  {
    name: 'password',
    required: false,
    description: "Password of the device's initial (factory) credentials; give both username and password, or neither.",
    example: 'factory-password',
  },
] as const satisfies readonly DeviceSheetColumn[];

export type ColumnName = (typeof deviceSheetColumns)[number]['name'];

export const deviceSheetColumnNames: readonly ColumnName[] = deviceSheetColumns.map((c) => c.name);

/** Spreadsheet users write `Serial Number` or `serial_number`; all of them mean `serialNumber`. */
function headerKey(header: string): string {
  return header.replace(/[\s_-]+/g, '').toLowerCase();
}

const columnsByKey = new Map<string, ColumnName>(deviceSheetColumnNames.map((name) => [headerKey(name), name]));

export function columnForHeader(header: string): ColumnName | undefined {
  return columnsByKey.get(headerKey(header));
}

/** Header text as it may appear in a message: bounded, quoted, control characters visible. */
function quoted(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/**
 * Maps each position of the header row to its column. Empty header cells map to nothing. Unknown,
 * duplicate and missing columns make the whole file unusable, so they are reported together.
 */
export function resolveHeaderRow(cells: readonly (string | undefined)[], line: number): (ColumnName | undefined)[] {
  const columns: (ColumnName | undefined)[] = [];
  const problems: FieldProblem[] = [];
  const seen = new Map<ColumnName, string>();
  cells.forEach((cell, position) => {
    const text = cell?.trim() ?? '';
    if (text === '') return;
    const column = columnForHeader(text);
    if (!column) {
      problems.push({
        field: 'file',
        line,
        column: text.slice(0, 40),
        reason: `unknown column ${quoted(text)}; the columns are ${deviceSheetColumnNames.join(', ')}`,
      });
      return;
    }
    const first = seen.get(column);
    if (first !== undefined) {
      problems.push({ field: 'file', line, column, reason: `column ${quoted(text)} repeats ${quoted(first)}` });
      return;
    }
    seen.set(column, text);
    columns[position] = column;
  });
  for (const { name, required } of deviceSheetColumns) {
    if (required && !seen.has(name)) problems.push({ field: 'file', line, column: name, reason: `required column ${name} is missing` });
  }
  if (problems.length > 0) {
    throw new ValidationError(`the header row (line ${line}) is invalid: ${problems.map((p) => p.reason).join('; ')}`, {
      fields: problems,
    });
  }
  return columns;
}
