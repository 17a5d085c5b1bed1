import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { constants, crc32, createInflateRaw, deflateRawSync } from 'node:zlib';
import ExcelJS from 'exceljs';
import { describe, expect, it } from 'vitest';
import { PayloadTooLargeError, ValidationError } from '../foundation/errors';
import { formulaInjectionReason, formulaReason, readDeviceSheet, type SheetLimits, type SheetRow } from './spreadsheet';

async function read(data: Buffer | string, fileName = 'devices.csv', limits?: Partial<SheetLimits>, contentType?: string) {
  const rows: SheetRow[] = [];
  const file = { data: typeof data === 'string' ? Buffer.from(data) : data, fileName, contentType };
  for await (const row of readDeviceSheet(file, limits)) rows.push(row);
  return rows;
}

/** The error a read ends with; fails the test if it ends without one. */
async function failure(data: Buffer | string, fileName = 'devices.csv', limits?: Partial<SheetLimits>): Promise<Error> {
  try {
    await read(data, fileName, limits);
  } catch (error) {
    return error as Error;
  }
  throw new Error('the file was read without an error');
}

function reasonsOf(error: Error): string[] {
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).fields.map((f) => `${f.field}: ${f.reason}`);
}

function mac(n: number): string {
  return `02:00:${[24, 16, 8, 0].map((shift) => ((n >>> shift) & 0xff).toString(16).padStart(2, '0')).join(':')}`;
}

const header = 'serialNumber,macAddress,address,site,name';
const row = (n: number, name = `Camera ${n}`) => `S-${n},${mac(n)},192.0.2.${n % 250},hq,${name}`;

// ------------------------------------------------------------------------------------------------
// ZIP archives built by hand, so tests can make them as hostile as they like.

interface ZipPart {
  name: string;
  content?: string | Buffer;
  /** Raw deflate data with its real size and CRC, for parts too big to hold in memory. */
  deflated?: { data: Buffer; size: number; crc: number };
  /** What the directory claims, when it should lie. */
  declaredSize?: number;
  flags?: number;
}

function zipArchive(parts: ZipPart[]): Buffer {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const part of parts) {
    const name = Buffer.from(part.name);
    const content = part.content === undefined ? undefined : Buffer.from(part.content);
    const data = part.deflated?.data ?? deflateRawSync(content!);
    const size = part.declaredSize ?? part.deflated?.size ?? content!.length;
    const crc = part.deflated?.crc ?? crc32(content!);
    const fields = (header: Buffer, at: number) => {
      header.writeUInt16LE(20, at);
      header.writeUInt16LE(part.flags ?? 0, at + 2);
      header.writeUInt16LE(8, at + 4);
      header.writeUInt32LE(crc, at + 10);
      header.writeUInt32LE(data.length, at + 14);
      header.writeUInt32LE(size, at + 18);
      header.writeUInt16LE(name.length, at + 22);
    };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    fields(local, 4);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    fields(entry, 6);
    entry.writeUInt32LE(offset, 42);
    chunks.push(local, name, data);
    central.push(entry, name);
    offset += local.length + name.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(parts.length, 8);
  end.writeUInt16LE(parts.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...chunks, directory, end]);
}

const main = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const inlineCell = (ref: string, text: string) => `<c r="${ref}" t="inlineStr"><is><t>${escapeXml(text)}</t></is></c>`;
const columnsOf = ['A', 'B', 'C', 'D', 'E'];
const textRow = (r: number, texts: string[]) => `<row r="${r}">${texts.map((t, i) => inlineCell(`${columnsOf[i]}${r}`, t)).join('')}</row>`;

/** The smallest workbook exceljs reads: one sheet of inline strings, no shared strings, no styles. */
function workbookParts(sheetData: string): ZipPart[] {
  return [
    {
      name: '[Content_Types].xml',
      content:
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>',
    },
    {
      name: 'xl/workbook.xml',
      content: `<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="${main}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Devices" sheetId="1" r:id="rId1"/></sheets></workbook>`,
    },
    {
      name: 'xl/_rels/workbook.xml.rels',
      content:
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
    },
    { name: 'xl/worksheets/sheet1.xml', content: `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="${main}"><sheetData>${sheetData}</sheetData></worksheet>` },
  ];
}

const xlsxHeader = textRow(1, ['serialNumber', 'macAddress', 'address', 'site', 'name']);

async function excelFile(build: (sheet: ExcelJS.Worksheet) => void): Promise<Buffer> {
  const workbook = new ExcelJS.Workbook();
  build(workbook.addWorksheet('Devices'));
  return Buffer.from(await workbook.xlsx.writeBuffer());
}

/** A raw deflate stream of `prefix`, `times` copies of `filler`, then `suffix`, made without holding it all. */
function repetitiveDeflate(prefix: string, filler: Buffer, times: number, suffix: string) {
  // Fully flushed pieces never refer back past their start, so they concatenate into one stream.
  const flushed = { finishFlush: constants.Z_FULL_FLUSH };
  const block = deflateRawSync(filler, flushed);
  const data = Buffer.concat([
    deflateRawSync(Buffer.from(prefix), flushed),
    ...Array.from({ length: times }, () => block),
    deflateRawSync(Buffer.from(suffix)),
  ]);
  let crc = crc32(prefix);
  for (let i = 0; i < times; i++) crc = crc32(filler, crc);
  crc = crc32(suffix, crc);
  return { data, size: prefix.length + filler.length * times + suffix.length, crc };
}

async function inflatedLength(data: Buffer): Promise<number> {
  let length = 0;
  for await (const chunk of Readable.from([data]).pipe(createInflateRaw())) length += (chunk as Buffer).length;
  return length;
}

// ------------------------------------------------------------------------------------------------

describe('reading a CSV device list', () => {
  it('reads rows into named, trimmed values, leaving empty cells out', async () => {
    const rows = await read(`${header},protocol\n S-1 , ${mac(1)} ,192.0.2.1,hq,,\n`);
    expect(rows).toEqual([{ line: 2, values: { serialNumber: 'S-1', macAddress: mac(1), address: '192.0.2.1', site: 'hq' }, problems: [] }]);
  });

  it('detects a ";" delimiter, strips a UTF-8 byte-order mark and matches header variants', async () => {
    const csv = `\uFEFFSerial Number;MAC_address;Address;SITE;device-type\r\nS-1;${mac(1)};192.0.2.1:8443;hq;camera\r\n`;
    const rows = await read(csv);
    expect(rows).toEqual([
      { line: 2, values: { serialNumber: 'S-1', macAddress: mac(1), address: '192.0.2.1:8443', site: 'hq', deviceType: 'camera' }, problems: [] },
    ]);
  });

  it('detects a tab delimiter', async () => {
    const rows = await read(`${header.replace(/,/g, '\t')}\n${row(1).replace(/,/g, '\t')}\n`);
    expect(rows[0]!.values).toMatchObject({ serialNumber: 'S-1', name: 'Camera 1' });
  });

  for (const [ending, newline] of [
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ]) {
    it(`keeps line numbers right across quoted newlines and blank lines (${ending})`, async () => {
      const lines = [
        '', // 1: blank lines before the header are skipped
        header, // 2
        row(1, '"Lobby'), // 3
        'East"', // 4: still the row of line 3
        '', // 5
        row(2), // 6
        ',,,,', // 7: a row of empty cells counts as blank
        '   ', // 8
        row(3), // 9
      ];
      const rows = await read(lines.join(newline) + newline);
      expect(rows.map((r) => r.line)).toEqual([3, 6, 9]);
      expect(rows[0]!.values.name).toBe(`Lobby${newline}East`);
      expect(rows[0]!.problems).toEqual([{ column: 'name', reason: 'contains the control character U+000' + (newline === '\n' ? 'A' : 'D') }]);
      expect(rows[1]!.problems).toEqual([]);
    });
  }

  it('reads a quoted cell holding the delimiter and doubled quotes as one value', async () => {
    const rows = await read(`${header}\nS-1,${mac(1)},192.0.2.1,hq,"Gate ""A"", north"\n`);
    expect(rows[0]!.values.name).toBe('Gate "A", north');
  });

  it('rejects unknown, duplicate and missing header columns as a file error naming them', async () => {
    const unknown = reasonsOf(await failure(`${header},colour\n${row(1)},red\n`));
    expect(unknown).toEqual([expect.stringContaining('file: unknown column "colour"')]);
    const duplicate = reasonsOf(await failure(`${header},Serial Number\n${row(1)},S-1\n`));
    expect(duplicate).toEqual(['file: column "Serial Number" repeats "serialNumber"']);
    const missing = reasonsOf(await failure('serialNumber,address\nS-1,192.0.2.1\n'));
    expect(missing).toEqual(['file: required column macAddress is missing', 'file: required column site is missing']);
  });

  it('rejects an empty file', async () => {
    expect(reasonsOf(await failure('\n\n'))).toEqual(['file: is empty; its first row must name the columns']);
  });

  it('rejects text that is not valid UTF-8, naming the line', async () => {
    const latin1 = Buffer.concat([Buffer.from(`${header}\n${row(1)}\nS-2,${mac(2)},192.0.2.2,hq,Caf`), Buffer.from([0xe9]), Buffer.from('\n')]);
    expect(reasonsOf(await failure(latin1))).toEqual(['file: is not valid UTF-8 text (line 3); save it as "CSV UTF-8"']);
  });

  it('transcodes UTF-16 with a byte-order mark and refuses it without one', async () => {
    const text = `${header}\n${row(1, 'Café')}\n`;
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    expect((await read(utf16))[0]!.values.name).toBe('Café');
    expect(reasonsOf(await failure(Buffer.from(text, 'utf16le')))).toEqual([
      'file: looks like UTF-16 text without a byte-order mark; save it as "CSV UTF-8"',
    ]);
  });

  it('rejects a file over the size limit with PayloadTooLargeError before reading it', async () => {
    const big = Buffer.alloc(20 * 1024 * 1024 + 1, 'a');
    const error = await failure(big);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect((error as PayloadTooLargeError).fields).toEqual([{ field: 'file', reason: 'is larger than 20971520 bytes (20 MiB)' }]);
    expect(await failure(`${header}\n${row(1)}\n`, 'devices.csv', { maxBytes: 10 })).toBeInstanceOf(PayloadTooLargeError);
  });

  it('rejects more device rows than the limit with PayloadTooLargeError, not counting blank rows', async () => {
    const csv = [header, row(1), '', row(2), row(3)].join('\n');
    expect(await read(csv, 'devices.csv', { maxRows: 3 })).toHaveLength(3);
    const error = await failure(csv, 'devices.csv', { maxRows: 2 });
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect((error as PayloadTooLargeError).fields[0]!.reason).toBe('has more than 2 device rows; split it into several files');
  });

  it('reports a cell over the length limit as a row problem and drops its value', async () => {
    const [first] = await read(`${header}\n${row(1, 'x'.repeat(20))}\n`, 'devices.csv', { maxCellLength: 17 });
    expect(first!.problems).toEqual([{ column: 'name', reason: 'is longer than 17 characters' }]);
    expect(first!.values.macAddress).toBe(mac(1));
    expect(first!.values.name).toBeUndefined();
  });

  it('reports NUL and other control characters in a cell as row problems', async () => {
    const rows = await read(`${header}\nS-1\u0000,${mac(1)},192.0.2.1,hq,Lobby\u001b[31m\nS-2,${mac(2)},192.0.2.2,hq,\u202Egnp.exe\n`);
    expect(rows[0]!.problems).toEqual([
      { column: 'serialNumber', reason: 'contains the control character U+0000' },
      { column: 'name', reason: 'contains the control character U+001B' },
    ]);
    expect(rows[1]!.problems).toEqual([{ column: 'name', reason: 'contains the control character U+202E' }]);
  });

  it('reports a cell starting like a formula as a row problem in every echoed column, keeping it as data', async () => {
    const csv = [
      `${header},username,password`,
      `=1+1,+${mac(1)},-192.0.2.1,@hq," =HYPERLINK(""http://x"")","\tadmin",secret`,
    ].join('\n');
    const [first] = await read(csv);
    expect(first!.problems).toEqual(
      ['serialNumber', 'macAddress', 'address', 'site', 'name', 'username'].map((column) => ({ column, reason: formulaInjectionReason })),
    );
    expect(first!.values.serialNumber).toBe('=1+1');
  });

  it('takes a password as typed: never echoed, so it may start like a formula and keep its spaces', async () => {
    const rows = await read(`${header},username,password\n${row(1)},admin,-p@ss \n${row(2)},admin,"\rsecret"\n`);
    expect(rows[0]!.values.password).toBe('-p@ss ');
    expect(rows[0]!.problems).toEqual([]);
    expect(rows[1]!.problems).toEqual([{ column: 'password', reason: 'contains the control character U+000D' }]);
  });

  it('rejects a row as long as the file (an unclosed quote) quickly, naming its line', async () => {
    const hostile = `${header}\n${row(1)}\nS-2,"${'a""'.repeat(5_000_000)}\n`;
    const started = performance.now();
    expect(reasonsOf(await failure(hostile))).toEqual(['file: has a row longer than 65536 characters at line 3 (an unclosed quote?)']);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('frames records as papaparse does: a quote inside an unquoted cell is text, a malformed quoted cell runs on', async () => {
    const rows = await read(`${header}\nS-1,${mac(1)},192.0.2.1,hq,Door 3" panel\nS-2,${mac(2)},192.0.2.2,hq,"Gate" east\nS-3,${mac(3)},192.0.2.3,hq,x\n`);
    expect(rows.map((r) => [r.line, r.values.name])).toEqual([
      [2, 'Door 3" panel'],
      [3, expect.stringContaining('Gate')],
    ]);
  });

  it('rejects millions of blank lines with PayloadTooLargeError instead of reading them all', async () => {
    const started = performance.now();
    const error = await failure(`${header}\n${'\n'.repeat(5_000_000)}${row(1)}\n`);
    expect(error).toBeInstanceOf(PayloadTooLargeError);
    expect((error as PayloadTooLargeError).fields[0]!.reason).toBe('has more than 201000 rows, counting blank ones; split it into several files');
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('reports a value in a column without a header', async () => {
    const [first] = await read(`${header}\n${row(1)},,extra\n`);
    expect(first!.problems).toEqual([{ column: 'column 7', reason: 'has a value but no column header' }]);
  });

  it('reads 100,000 rows within a generous time bound', async () => {
    const lines = [`${header},deviceType,protocol`];
    for (let n = 1; n <= 100_000; n++) lines.push(`${row(n)},camera,https`);
    const csv = Buffer.from(lines.join('\r\n'));
    const started = performance.now();
    let count = 0;
    let last = 0;
    for await (const sheetRow of readDeviceSheet({ data: csv, fileName: 'devices.csv' })) {
      count += 1;
      last = sheetRow.line;
      if (sheetRow.problems.length > 0) throw new Error(`line ${sheetRow.line}: ${JSON.stringify(sheetRow.problems)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(`read 100,000 CSV rows (${(csv.length / 1024 / 1024).toFixed(1)} MiB) in ${seconds.toFixed(2)} s`);
    expect(count).toBe(100_000);
    expect(last).toBe(100_001);
    expect(seconds).toBeLessThan(30);
  });
});

describe('recognising the file format', () => {
  it('rejects formats other than CSV and .xlsx, naming the supported ones', async () => {
    const ole = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0]);
    expect(reasonsOf(await failure(ole, 'devices.xls'))).toEqual(['file: is a .xls file; upload a CSV (.csv, UTF-8) or Excel workbook (.xlsx)']);
    expect(reasonsOf(await failure(zipArchive([{ name: 'content.xml', content: '<x/>' }]), 'devices.ods'))[0]).toContain('.ods');
    expect(reasonsOf(await failure('%PDF-1.7\n', 'devices')).join()).toContain('is a PDF document; upload a CSV (.csv, UTF-8) or Excel workbook (.xlsx)');
  });

  it('rejects a file named .xlsx that is not a ZIP archive', async () => {
    expect(reasonsOf(await failure(`${header}\n${row(1)}\n`, 'devices.xlsx'))[0]).toContain('is not an Excel workbook (.xlsx files are ZIP archives)');
  });

  it('rejects a ZIP archive named .xlsx that is not a workbook', async () => {
    const docx = zipArchive([{ name: 'word/document.xml', content: '<document/>' }]);
    expect(reasonsOf(await failure(docx, 'devices.xlsx'))[0]).toContain('it has no xl/workbook.xml');
  });

  it('rejects a file named .csv that is a workbook', async () => {
    const xlsx = await excelFile((sheet) => sheet.addRow(['serialNumber']));
    expect(reasonsOf(await failure(xlsx, 'devices.csv'))[0]).toContain('is named as CSV but is a ZIP archive');
  });

  it('goes by content type and then by content when the name has no extension', async () => {
    expect(await read(`${header}\n${row(1)}\n`, 'upload', undefined, 'text/csv')).toHaveLength(1);
    const xlsx = zipArchive(workbookParts(xlsxHeader + textRow(2, ['S-1', mac(1), '192.0.2.1', 'hq', 'Gate'])));
    expect(await read(xlsx, 'upload', undefined, 'application/octet-stream')).toHaveLength(1);
  });
});

describe('reading an Excel device list', () => {
  it.each(['devices-openpyxl.xlsx', 'devices-pandas.xlsx'])(
    'reads the first worksheet of a workbook written by openpyxl or pandas, whose parts are named from the package root (%s)',
    async (fixture) => {
      const rows = await read(readFileSync(new URL(`./fixtures/${fixture}`, import.meta.url)), fixture);
      expect(rows.map((r) => [r.line, r.values.serialNumber, r.values.macAddress, r.values.name, r.problems])).toEqual([
        [2, 'XL-0001', '02:00:5e:00:00:01', 'Lobby 1', []],
        [3, 'XL-0002', '02:00:5e:00:00:02', 'Lobby 2', []],
      ]);
    },
  );

  it('reads the first worksheet of a minimal workbook with inline strings', async () => {
    const xlsx = zipArchive(workbookParts(`${xlsxHeader}<row r="2"/>${textRow(4, ['S-1', mac(1), '192.0.2.1', 'hq', ' Gate '])}`));
    expect(await read(xlsx, 'devices.xlsx')).toEqual([
      { line: 4, values: { serialNumber: 'S-1', macAddress: mac(1), address: '192.0.2.1', site: 'hq', name: 'Gate' }, problems: [] },
    ]);
  });

  it('reports a formula cell as a row problem and uses neither the formula nor its cached result', async () => {
    const xlsx = await excelFile((sheet) => {
      sheet.addRow(['serialNumber', 'macAddress', 'address', 'site', 'name']);
      sheet.addRow([{ formula: '"CAM-"&"0001"', result: 'CAM-0001' }, mac(1), '192.0.2.1', 'hq', 'Gate']);
    });
    const [first] = await read(xlsx, 'devices.xlsx');
    expect(first!.problems).toEqual([{ column: 'serialNumber', reason: formulaReason }]);
    expect(first!.values).toEqual({ macAddress: mac(1), address: '192.0.2.1', site: 'hq', name: 'Gate' });
  });

  it('reports every cell of a shared formula, including those exceljs reads as text', async () => {
    const cells = (r: number, formula: string) =>
      `<row r="${r}">${inlineCell(`A${r}`, `S-${r}`)}${inlineCell(`B${r}`, mac(r))}${inlineCell(`C${r}`, '192.0.2.1')}${inlineCell(`D${r}`, 'hq')}<c r="E${r}" t="str">${formula}<v>Gate</v></c></row>`;
    const sheet = xlsxHeader + cells(2, '<f t="shared" ref="E2:E3" si="0">D2&amp;"x"</f>') + cells(3, '<f t="shared" si="0"/>');
    const rows = await read(zipArchive(workbookParts(sheet)), 'devices.xlsx');
    expect(rows.map((r) => r.problems)).toEqual([[{ column: 'name', reason: formulaReason }], [{ column: 'name', reason: formulaReason }]]);
    expect(rows.map((r) => r.values.name)).toEqual([undefined, undefined]);
  });

  it('shows numbers and dates as text, and reports a MAC address Excel stored as a number', async () => {
    const xlsx = await excelFile((sheet) => {
      sheet.addRow(['serialNumber', 'macAddress', 'address', 'site', 'name', 'deviceId']);
      sheet.addRow([1234, 1122334455, '192.0.2.1', 2024, new Date(Date.UTC(2024, 0, 5)), 12345678901234567]);
      sheet.getCell('E2').numFmt = 'yyyy-mm-dd';
      sheet.getCell('D2').numFmt = '[Blue]0;[Red]-0';
    });
    const [first] = await read(xlsx, 'devices.xlsx');
    expect(first!.values).toEqual({
      serialNumber: '1234',
      macAddress: '1122334455',
      address: '192.0.2.1',
      site: '2024',
      name: '2024-01-05',
      deviceId: '12345678901234568',
    });
    expect(first!.problems.map((p) => p.column)).toEqual(['macAddress', 'deviceId']);
    expect(first!.problems[0]!.reason).toContain('stored as a number');
    expect(first!.problems[1]!.reason).toContain('15 digits');
  });

  it('reports text cells starting like a formula, and error values, as row problems', async () => {
    const xlsx = await excelFile((sheet) => {
      sheet.addRow(['serialNumber', 'macAddress', 'address', 'site', 'name']);
      sheet.addRow(['S-1', mac(1), '192.0.2.1', { error: '#REF!' }, '=HYPERLINK("http://evil.example","x")']);
    });
    const [first] = await read(xlsx, 'devices.xlsx');
    expect(first!.problems).toEqual([
      { column: 'site', reason: 'holds the spreadsheet error #REF!' },
      { column: 'name', reason: formulaInjectionReason },
    ]);
  });

  it('rejects a header row holding a formula', async () => {
    const xlsx = await excelFile((sheet) => {
      sheet.addRow([{ formula: '"serial"&"Number"', result: 'serialNumber' }, 'macAddress', 'address', 'site']);
    });
    expect(reasonsOf(await failure(xlsx, 'devices.xlsx'))[0]).toContain('must be plain text: column A formulas are not accepted');
  });

  it('applies the row limit to Excel files too', async () => {
    const rows = [2, 3, 4].map((r) => textRow(r, [`S-${r}`, mac(r), '192.0.2.1', 'hq', 'Gate'])).join('');
    expect(await failure(zipArchive(workbookParts(xlsxHeader + rows)), 'devices.xlsx', { maxRows: 2 })).toBeInstanceOf(PayloadTooLargeError);
  });
});

describe('hostile Excel files', () => {
  it('rejects a real ZIP bomb (a 300 MiB worksheet) from its directory, quickly and without inflating it', async () => {
    const bomb = repetitiveDeflate(
      `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="${main}"><sheetData>${xlsxHeader}`,
      Buffer.alloc(1024 * 1024, ' '),
      300,
      '</sheetData></worksheet>',
    );
    expect(await inflatedLength(bomb.data)).toBe(bomb.size);
    expect(bomb.size).toBeGreaterThan(300 * 1024 * 1024);
    const parts = workbookParts('');
    parts[3] = { name: 'xl/worksheets/sheet1.xml', deflated: bomb };
    const xlsx = zipArchive(parts);
    expect(xlsx.length).toBeLessThan(1024 * 1024);

    const before = process.memoryUsage();
    const started = performance.now();
    const error = await failure(xlsx, 'devices.xlsx');
    const elapsed = performance.now() - started;
    const after = process.memoryUsage();
    expect(reasonsOf(error)[0]).toContain('when uncompressed (a ZIP bomb?)');
    expect(elapsed).toBeLessThan(1000);
    expect(after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers).toBeLessThan(32 * 1024 * 1024);
  });

  it('rejects an entry that expands far more than the ratio limit even when the total is small', async () => {
    const dense = repetitiveDeflate('<sst>', Buffer.alloc(1024 * 1024, 'A'), 20, '</sst>');
    const parts = [...workbookParts(xlsxHeader), { name: 'xl/sharedStrings.xml', deflated: dense }];
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toMatch(/"xl\/sharedStrings.xml" that expands \d+ times, more than 100/);
  });

  it('rejects an entry whose data expands beyond the size its directory entry declares', async () => {
    const bomb = repetitiveDeflate(`<worksheet xmlns="${main}"><sheetData>`, Buffer.alloc(1024 * 1024, ' '), 300, '</sheetData></worksheet>');
    const parts = workbookParts('');
    parts[3] = { name: 'xl/worksheets/sheet1.xml', deflated: bomb, declaredSize: 1000 };
    const started = performance.now();
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('holds more data than its directory entry declares');
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('rejects an archive with more entries than the limit', async () => {
    const parts = [...workbookParts(xlsxHeader), ...Array.from({ length: 997 }, (_, i) => ({ name: `xl/media/image${i}.png`, content: 'x' }))];
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('has 1001 ZIP entries; at most 1000 are accepted');
  });

  it('rejects an encrypted entry', async () => {
    const parts = workbookParts(xlsxHeader);
    parts[3] = { ...parts[3]!, flags: 0x0001 };
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('is encrypted or password-protected');
  });

  it('rejects a part with a document type declaration (entity expansion)', async () => {
    const laughs = '<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><sst><si><t>&b;</t></si></sst>';
    const parts = [...workbookParts(xlsxHeader), { name: 'xl/sharedStrings.xml', content: laughs }];
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('has a document type declaration in "xl/sharedStrings.xml"');
  });

  it('rejects links to other workbooks and data connections, which could make a reader reach out', async () => {
    const linked = [...workbookParts(xlsxHeader), { name: 'xl/externalLinks/externalLink1.xml', content: '<externalLink/>' }];
    expect(reasonsOf(await failure(zipArchive(linked), 'devices.xlsx'))[0]).toContain('contains links to other workbooks');
    const connected = [...workbookParts(xlsxHeader), { name: 'xl/connections.xml', content: '<connections/>' }];
    expect(reasonsOf(await failure(zipArchive(connected), 'devices.xlsx'))[0]).toContain('contains data connections');
  });

  it('rejects a number format that would make the date check take quadratic time', async () => {
    const styles = `<styleSheet xmlns="${main}"><numFmts count="1"><numFmt numFmtId="164" formatCode="${'['.repeat(60_000)}"/></numFmts></styleSheet>`;
    const parts = [...workbookParts(xlsxHeader), { name: 'xl/styles.xml', content: styles }];
    const started = performance.now();
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('has a malformed number format');
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('reports malformed worksheet XML as a file error, not a crash', async () => {
    const parts = workbookParts(`${xlsxHeader}<row r="2"><c r="A2" t="inlineStr"><is><t>S-1</is></c></row>`);
    expect(reasonsOf(await failure(zipArchive(parts), 'devices.xlsx'))[0]).toContain('is not a readable Excel workbook');
  });
});
