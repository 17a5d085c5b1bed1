/**
 * Reading device lists from users' CSV and Excel (.xlsx) files, one row at a time. The files come
 * from outside and may be hostile, so every size is bounded before or while reading: the file, its
 * rows, its cells and, for .xlsx, what its ZIP archive expands to. A problem in one row is reported
 * with that row; a problem with the file as a whole is a ValidationError (or PayloadTooLargeError)
 * on the field `file`.
 */
import { Readable, pipeline } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import ExcelJS from 'exceljs';
import Papa from 'papaparse';
import { PayloadTooLargeError, ServiceError, ValidationError } from '../foundation/errors';
import { columnForHeader, resolveHeaderRow, type ColumnName } from './columns';

export interface SheetLimits {
  /** Size of the uploaded file, in bytes. */
  maxBytes: number;
  /** Device rows, not counting the header and empty rows. */
  maxRows: number;
  /** Characters in one cell, after trimming. */
  maxCellLength: number;
  /** .xlsx only: the sum of the uncompressed sizes of the archive's entries. */
  maxUncompressedBytes: number;
  /** .xlsx only: uncompressed over compressed size, for each entry of the archive. */
  maxCompressionRatio: number;
  /** .xlsx only: entries in the archive. */
  maxZipEntries: number;
}

export const defaultSheetLimits: SheetLimits = {
  maxBytes: 20 * 1024 * 1024,
  maxRows: 100_000,
  maxCellLength: 1024,
  maxUncompressedBytes: 200 * 1024 * 1024,
  maxCompressionRatio: 100,
  maxZipEntries: 1000,
};

export interface SheetRowProblem {
  column: ColumnName | string;
  reason: string;
}

export interface SheetRow {
  /** Where the row is as its user sees it (the header is 1): the line a text editor shows for CSV, the row number for Excel. */
  line: number;
  /** Trimmed; empty cells omitted. */
  values: Partial<Record<ColumnName, string>>;
  problems: SheetRowProblem[];
}

export interface SheetFile {
  data: Buffer;
  fileName: string;
  contentType?: string;
}

/**
 * The device rows of a CSV or .xlsx file, in file order, empty rows skipped. Throws before the first
 * row for a file that cannot be read at all, and while reading once a limit is passed.
 */
export async function* readDeviceSheet(file: SheetFile, limits: Partial<SheetLimits> = {}): AsyncGenerator<SheetRow> {
  const bounds: SheetLimits = { ...defaultSheetLimits, ...limits };
  if (file.data.length > bounds.maxBytes) {
    throw new PayloadTooLargeError(`the file is larger than ${formatBytes(bounds.maxBytes)}`, {
      fields: [{ field: 'file', reason: `is larger than ${bounds.maxBytes} bytes (${formatBytes(bounds.maxBytes)})` }],
    });
  }
  if (sheetFormat(file) === 'xlsx') yield* readXlsx(file.data, bounds);
  else yield* readCsv(file.data, bounds);
}

// ---------------------------------------------------------------------------------------------
// What every format shares: file errors, the header, and the checks on each cell.

function fileError(reason: string): ValidationError {
  return new ValidationError(`the file ${reason}`, { fields: [{ field: 'file', reason }] });
}

function tooManyRows(maxRows: number): PayloadTooLargeError {
  const reason = `has more than ${maxRows} device rows; split it into several files`;
  return new PayloadTooLargeError(`the file ${reason}`, { fields: [{ field: 'file', reason }] });
}

/** Blank rows are skipped but not free to read; millions of them would keep a reader busy for minutes. */
function maxLinesFor(limits: SheetLimits): number {
  return limits.maxRows * 2 + 1000;
}

function tooManyLines(maxLines: number): PayloadTooLargeError {
  const reason = `has more than ${maxLines} rows, counting blank ones; split it into several files`;
  return new PayloadTooLargeError(`the file ${reason}`, { fields: [{ field: 'file', reason }] });
}

function formatBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${bytes} bytes`;
}

/** Names in messages: bounded, quoted, control characters visible. */
function quoted(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}…` : text);
}

/** One cell as read from the file: its text, or why it has none (a formula, an error value). */
interface SheetCell {
  position: number;
  text?: string;
  problem?: string;
  /** An Excel number cell, shown as its digits. */
  numeric?: boolean;
}

interface Layout {
  columns: (ColumnName | undefined)[];
  /** How the user finds a column that has no header: `column 7` in CSV, `column G` in Excel. */
  label: (position: number) => string;
}

export const formulaInjectionReason = 'must not start with =, +, -, @ (spreadsheet formula)';
export const formulaReason = 'formulas are not accepted';

/** Values are echoed into reports opened in spreadsheets; one starting like a formula could run there. */
const formulaStart = /^[=+\-@]/;
/** C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional overrides that disguise text. */
const controlCharacter = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/**
 * Passwords are never echoed into reports, and a generated one may well start with `-` or `@`, so
 * only they are exempt from the formula rule. They are not trimmed either: spaces may be part of one.
 */
const secretColumns: ReadonlySet<string> = new Set(['password']);

function checkedText(raw: string, maxLength: number, secret = false): { value?: string; problems: string[] } {
  const value = secret ? raw : raw.trim();
  if (value === '') return { problems: [] };
  if (value.length > maxLength) return { problems: [`is longer than ${maxLength} characters`] };
  const problems: string[] = [];
  if (!secret && (raw.startsWith('\t') || raw.startsWith('\r') || formulaStart.test(value))) problems.push(formulaInjectionReason);
  const control = controlCharacter.exec(value);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
    problems.push(`contains the control character U+${code}`);
  }
  return { value, problems };
}

function isEmptyRow(cells: readonly SheetCell[]): boolean {
  return cells.every((cell) => cell.problem === undefined && (cell.text ?? '').trim() === '');
}

/** The row's values and problems; too-long and header-less values are dropped, not kept. */
function deviceRow(line: number, layout: Layout, cells: readonly SheetCell[], limits: SheetLimits): SheetRow {
  const row: SheetRow = { line, values: {}, problems: [] };
  for (const cell of cells) {
    const column = layout.columns[cell.position];
    const where = column ?? layout.label(cell.position);
    if (cell.problem) row.problems.push({ column: where, reason: cell.problem });
    if (cell.text === undefined) continue;
    const { value, problems } = checkedText(cell.text, limits.maxCellLength, column !== undefined && secretColumns.has(column));
    if (value === undefined && problems.length === 0) continue;
    if (!column) {
      row.problems.push({ column: where, reason: 'has a value but no column header' });
      continue;
    }
    if (column === 'macAddress' && cell.numeric) {
      row.problems.push({
        column,
        reason: 'is stored as a number, so the spreadsheet may have dropped leading zeros or rounded it; format the column as Text and enter the MAC address again',
      });
    }
    for (const reason of problems) row.problems.push({ column, reason });
    if (value !== undefined) row.values[column] = value;
  }
  return row;
}

/** The header row must be text; a formula or error value there leaves the columns unknown. */
function headerLayout(line: number, cells: readonly SheetCell[], label: Layout['label']): Layout {
  const texts: (string | undefined)[] = [];
  for (const cell of cells) {
    if (cell.problem) {
      const reason = `the header row (line ${line}) must be plain text: ${label(cell.position)} ${cell.problem}`;
      throw new ValidationError(`the file's ${reason}`, { fields: [{ field: 'file', line, reason }] });
    }
    texts[cell.position] = cell.text;
  }
  return { columns: resolveHeaderRow(texts, line), label };
}

// ---------------------------------------------------------------------------------------------
// Which format: the extension decides, the content type helps when there is none, and the first
// bytes must agree with either.

type SheetFormat = 'csv' | 'xlsx';

const xlsxContentType = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
const csvContentTypes = new Set(['text/csv', 'application/csv', 'text/comma-separated-values']);
const supportedFormats = 'CSV (.csv, UTF-8) or Excel workbook (.xlsx)';

function startsWith(data: Buffer, bytes: readonly number[]): boolean {
  return data.length >= bytes.length && bytes.every((byte, index) => data[index] === byte);
}

const zipMagic = [0x50, 0x4b, 0x03, 0x04];
const emptyZipMagic = [0x50, 0x4b, 0x05, 0x06];
/** Kinds of file people upload by mistake, by their first bytes. */
const binaryKinds: { magic: number[]; kind: string }[] = [
  { magic: zipMagic, kind: 'a ZIP archive (an Excel workbook or other document)' },
  { magic: [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1], kind: 'a legacy Office document (e.g. .xls)' },
  { magic: [0x25, 0x50, 0x44, 0x46, 0x2d], kind: 'a PDF document' },
];

export function sheetFormat(file: SheetFile): SheetFormat {
  const extension = /\.([A-Za-z0-9]{1,16})$/.exec(file.fileName.trim())?.[1]?.toLowerCase();
  const contentType = file.contentType?.split(';')[0]?.trim().toLowerCase();
  const isZip = startsWith(file.data, zipMagic) || startsWith(file.data, emptyZipMagic);
  const binary = binaryKinds.find(({ magic }) => startsWith(file.data, magic));

  let format: SheetFormat;
  if (extension === 'csv') format = 'csv';
  else if (extension === 'xlsx') format = 'xlsx';
  else if (extension !== undefined) throw fileError(`is a .${extension} file; upload a ${supportedFormats}`);
  else if (contentType && csvContentTypes.has(contentType)) format = 'csv';
  else if (contentType === xlsxContentType || isZip) format = 'xlsx';
  else if (binary) throw fileError(`is ${binary.kind}; upload a ${supportedFormats}`);
  else format = 'csv';

  if (format === 'xlsx' && !isZip) {
    throw fileError(`is not an Excel workbook (.xlsx files are ZIP archives); upload a ${supportedFormats}`);
  }
  if (format === 'csv' && binary) throw fileError(`is named as CSV but is ${binary.kind}; upload a ${supportedFormats}`);
  return format;
}

// ---------------------------------------------------------------------------------------------
// CSV: decoded strictly, then parsed by papaparse as a stream of records.

const csvChunkCharacters = 64 * 1024;
const csvChunkRecords = 256;

/**
 * UTF-8, with or without a byte-order mark. UTF-16 with a byte-order mark (Excel's "Unicode text")
 * is transcoded; without one it cannot be told apart from binary data reliably, so it is refused.
 */
function decodeCsvText(data: Buffer): string {
  if (startsWith(data, [0xff, 0xfe, 0x00, 0x00]) || startsWith(data, [0x00, 0x00, 0xfe, 0xff])) {
    throw fileError('is UTF-32 text; save it as "CSV UTF-8"');
  }
  const utf16 = startsWith(data, [0xff, 0xfe]) ? 'utf-16le' : startsWith(data, [0xfe, 0xff]) ? 'utf-16be' : undefined;
  if (utf16) {
    try {
      return new TextDecoder(utf16, { fatal: true }).decode(data);
    } catch {
      throw fileError('is not valid UTF-16 text; save it as "CSV UTF-8"');
    }
  }
  if (data.length >= 2 && (data[0] === 0) !== (data[1] === 0)) {
    throw fileError('looks like UTF-16 text without a byte-order mark; save it as "CSV UTF-8"');
  }
  try {
    // The decoder drops a UTF-8 byte-order mark itself.
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw fileError(`is not valid UTF-8 text (line ${invalidUtf8Line(data)}); save it as "CSV UTF-8"`);
  }
}

/** CR and LF bytes never occur inside a UTF-8 sequence, so lines can be checked one by one. */
function invalidUtf8Line(data: Buffer): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  let start = 0;
  for (let at = 0; at <= data.length; at++) {
    const byte = data[at];
    if (at < data.length && byte !== 0x0a && byte !== 0x0d) continue;
    try {
      decoder.decode(data.subarray(start, at));
    } catch {
      return line;
    }
    if (byte === 0x0d && data[at + 1] === 0x0a) at++;
    line++;
    start = at + 1;
  }
  return line;
}

type Newline = '\r\n' | '\n' | '\r';

/** The delimiter is the one that makes the header row name the most known columns. */
function csvDialect(text: string): { delimiter: string; newline: Newline } {
  const head = text.slice(0, csvChunkCharacters);
  const newline = (/\r\n|\n|\r/.exec(head)?.[0] ?? '\n') as Newline;
  const headerLine = head.split(/\r\n|\n|\r/).find((line) => line.trim() !== '') ?? '';
  let best = { delimiter: ',', known: -1, fields: 0 };
  for (const delimiter of [',', ';', '\t']) {
    const cells = Papa.parse<string[]>(headerLine, { delimiter, newline }).data[0] ?? [];
    const known = cells.filter((cell) => columnForHeader(cell.trim())).length;
    if (known > best.known || (known === best.known && cells.length > best.fields)) best = { delimiter, known, fields: cells.length };
  }
  return { delimiter: best.delimiter, newline };
}

/**
 * Where each record ends, by papaparse's own quoting rules: a quote opens a field only at its start,
 * `""` inside it is a quote, and a quote closes it only before (spaces and) a delimiter, a line break
 * or the end. papaparse parses each chunk it is given again from the start of its unfinished record,
 * so a record as long as the file (an unclosed quote, a line of a million delimiters) would cost
 * quadratic time and gigabytes; chunks that end between records avoid that, and a record over the
 * bound is refused before papaparse sees it.
 */
function* recordEnds(text: string, delimiter: string, newline: Newline): Generator<number> {
  const length = text.length;
  let cursor = 0;
  let nextDelimiter = text.indexOf(delimiter);
  let nextNewline = text.indexOf(newline);
  while (cursor < length) {
    if (text[cursor] === '"') {
      let quote = cursor;
      for (;;) {
        quote = text.indexOf('"', quote + 1);
        if (quote === -1 || quote === length - 1) {
          yield length;
          return;
        }
        if (text[quote + 1] === '"') {
          quote += 1;
          continue;
        }
        let after = quote + 1;
        while (after < length && /\s/.test(text[after]!) && !text.startsWith(delimiter, after) && !text.startsWith(newline, after)) after++;
        if (text.startsWith(delimiter, after)) {
          cursor = after + delimiter.length;
          break;
        }
        if (text.startsWith(newline, after)) {
          cursor = after + newline.length;
          yield cursor;
          break;
        }
        // Any other quote is part of the text; the field goes on.
      }
      continue;
    }
    // Cached positions keep a line of many fields linear.
    if (nextDelimiter !== -1 && nextDelimiter < cursor) nextDelimiter = text.indexOf(delimiter, cursor);
    if (nextNewline !== -1 && nextNewline < cursor) nextNewline = text.indexOf(newline, cursor);
    if (nextDelimiter !== -1 && (nextNewline === -1 || nextDelimiter < nextNewline)) {
      cursor = nextDelimiter + delimiter.length;
    } else if (nextNewline !== -1) {
      cursor = nextNewline + newline.length;
      yield cursor;
    } else {
      yield length;
      return;
    }
  }
  // The last field ended with a delimiter at the very end of the text.
  if (length > 0 && cursor >= length && !text.endsWith(newline)) yield length;
}

/**
 * Chunks of whole records, each record at most `maxRecord` characters. Few records per chunk, too:
 * when its reader falls behind, papaparse pauses and later splits the rest of the chunk again.
 */
function* recordChunks(text: string, delimiter: string, newline: Newline, maxRecord: number): Generator<string> {
  let chunkStart = 0;
  let recordStart = 0;
  let records = 0;
  for (const end of recordEnds(text, delimiter, newline)) {
    if (end - recordStart > maxRecord) {
      const line = (text.slice(0, recordStart).match(/\r\n|\r|\n/g)?.length ?? 0) + 1;
      throw fileError(`has a row longer than ${maxRecord} characters at line ${line} (an unclosed quote?)`);
    }
    recordStart = end;
    if (++records >= csvChunkRecords || end - chunkStart >= csvChunkCharacters) {
      yield text.slice(chunkStart, end);
      chunkStart = end;
      records = 0;
    }
  }
  if (chunkStart < text.length) yield text.slice(chunkStart);
}

/** Line breaks inside a record's quoted cells, so the next record's line number stays right. */
function lineBreaksWithin(record: readonly string[], newline: Newline): number {
  let breaks = 0;
  for (const cell of record) {
    if (cell.includes('\n') || cell.includes('\r')) breaks += cell.match(/\r\n|\r|\n/g)?.length ?? 0;
  }
  // A CRLF line in a file that otherwise ends lines with LF leaves its CR at the end of the last cell.
  if (newline === '\n' && record.at(-1)?.endsWith('\r')) breaks -= 1;
  return breaks;
}

async function* readCsv(data: Buffer, limits: SheetLimits): AsyncGenerator<SheetRow> {
  const text = decodeCsvText(data);
  const { delimiter, newline } = csvDialect(text);
  const parser = Papa.parse(Papa.NODE_STREAM_INPUT, { delimiter, newline, header: false, skipEmptyLines: false });
  // A device row is at most ten cells; anything near this long is not one.
  const maxRecord = Math.max(64 * 1024, limits.maxCellLength * 32);
  // Errors of either stream end the iteration below with that error.
  const parsed = pipeline(Readable.from(recordChunks(text, delimiter, newline, maxRecord)), parser, () => {}) as AsyncIterable<string[]>;
  const label = (position: number) => `column ${position + 1}`;

  const maxLines = maxLinesFor(limits);
  let line = 1;
  let layout: Layout | undefined;
  let rows = 0;
  let records = 0;
  for await (const record of parsed) {
    if (++records > maxLines) throw tooManyLines(maxLines);
    const start = line;
    line += 1 + lineBreaksWithin(record, newline);
    const cells: SheetCell[] = [];
    record.forEach((text, position) => {
      if (text.trim() !== '') cells.push({ position, text });
    });
    if (cells.length === 0) continue;
    if (!layout) {
      layout = headerLayout(start, cells, label);
      continue;
    }
    if (++rows > limits.maxRows) throw tooManyRows(limits.maxRows);
    yield deviceRow(start, layout, cells, limits);
  }
  if (!layout) throw fileError('is empty; its first row must name the columns');
}

// ---------------------------------------------------------------------------------------------
// XLSX: the ZIP archive is checked from its central directory and by inflating each entry with a
// bound, before exceljs sees a byte; exceljs then gets an archive rebuilt from the checked entries
// only, so what it reads is exactly what was checked.

const signatures = {
  localHeader: 0x04034b50,
  centralHeader: 0x02014b50,
  endOfCentralDirectory: 0x06054b50,
  zip64Locator: 0x07064b50,
};

/** Small entries cannot expand to much whatever their ratio, and tiny XML parts compress very well. */
const ratioGraceBytes = 64 * 1024;

interface ZipEntry {
  name: string;
  nameBytes: Buffer;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  dataStart: number;
}

function damaged(what: string): ValidationError {
  return fileError(`is not a readable Excel workbook: ${what}`);
}

function endOfCentralDirectory(data: Buffer): number {
  // The record is 22 bytes plus a comment of up to 65535; it must end exactly at the end of the file.
  for (let at = data.length - 22; at >= Math.max(0, data.length - 22 - 0xffff); at--) {
    if (data.readUInt32LE(at) === signatures.endOfCentralDirectory && at + 22 + data.readUInt16LE(at + 20) === data.length) return at;
  }
  return -1;
}

/** Everything that can be known without inflating anything: sizes, ratios, counts, oddities. */
function zipDirectory(data: Buffer, limits: SheetLimits): ZipEntry[] {
  const end = endOfCentralDirectory(data);
  if (end < 0) throw damaged('no ZIP end-of-central-directory record');
  const totalEntries = data.readUInt16LE(end + 10);
  const directorySize = data.readUInt32LE(end + 12);
  const directoryOffset = data.readUInt32LE(end + 16);
  const zip64 = end >= 20 && data.readUInt32LE(end - 20) === signatures.zip64Locator;
  if (zip64 || totalEntries === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
    throw fileError('uses ZIP64 extensions, which a device list never needs');
  }
  if (data.readUInt16LE(end + 4) !== 0 || data.readUInt16LE(end + 6) !== 0 || data.readUInt16LE(end + 8) !== totalEntries) {
    throw fileError('is a multi-part ZIP archive, which is not accepted');
  }
  if (totalEntries > limits.maxZipEntries) {
    throw fileError(`has ${totalEntries} ZIP entries; at most ${limits.maxZipEntries} are accepted`);
  }
  if (directoryOffset + directorySize !== end) throw damaged('its ZIP central directory is not where its end record says');

  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  let uncompressedTotal = 0;
  let at = directoryOffset;
  for (let index = 0; index < totalEntries; index++) {
    if (at + 46 > end || data.readUInt32LE(at) !== signatures.centralHeader) throw damaged('its ZIP central directory is damaged');
    const flags = data.readUInt16LE(at + 8);
    const method = data.readUInt16LE(at + 10);
    const compressedSize = data.readUInt32LE(at + 20);
    const uncompressedSize = data.readUInt32LE(at + 24);
    const nameLength = data.readUInt16LE(at + 28);
    const extraLength = data.readUInt16LE(at + 30);
    const commentLength = data.readUInt16LE(at + 32);
    const localHeaderOffset = data.readUInt32LE(at + 42);
    const next = at + 46 + nameLength + extraLength + commentLength;
    if (next > end) throw damaged('its ZIP central directory is damaged');
    const nameBytes = data.subarray(at + 46, at + 46 + nameLength);
    // Bit 11 marks UTF-8 names; others are CP437, which matches ASCII for every part Excel writes.
    const name = nameBytes.toString(flags & 0x0800 ? 'utf8' : 'latin1');

    // Bit 0: encrypted; bit 6: strong encryption; bit 13: encrypted central directory.
    if (flags & 0x2041) throw fileError('is encrypted or password-protected; save it without a password');
    if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localHeaderOffset === 0xffffffff) {
      throw fileError('uses ZIP64 extensions, which a device list never needs');
    }
    if (data.readUInt16LE(at + 34) !== 0) throw fileError('is a multi-part ZIP archive, which is not accepted');
    if (method !== 0 && method !== 8) throw fileError(`uses ZIP compression method ${method}; only stored and deflate are accepted`);
    if (method === 0 && compressedSize !== uncompressedSize) throw damaged(`ZIP entry ${quoted(name)} has inconsistent sizes`);
    const key = name.toLowerCase();
    if (names.has(key)) throw fileError(`has two ZIP entries named ${quoted(name)}`);
    names.add(key);

    uncompressedTotal += uncompressedSize;
    if (uncompressedTotal > limits.maxUncompressedBytes) {
      throw fileError(`expands to more than ${formatBytes(limits.maxUncompressedBytes)} when uncompressed (a ZIP bomb?); that is not accepted`);
    }
    if (uncompressedSize > ratioGraceBytes && uncompressedSize > compressedSize * limits.maxCompressionRatio) {
      const ratio = compressedSize === 0 ? 'infinitely' : `${Math.round(uncompressedSize / compressedSize)} times`;
      throw fileError(
        `has a ZIP entry ${quoted(name)} that expands ${ratio}, more than ${limits.maxCompressionRatio} (a ZIP bomb?); that is not accepted`,
      );
    }
    entries.push({ name, nameBytes, flags, method, crc32: data.readUInt32LE(at + 16), compressedSize, uncompressedSize, localHeaderOffset, dataStart: 0 });
    at = next;
  }
  if (at !== end) throw damaged('its ZIP central directory is damaged');

  for (const entry of entries) {
    const local = entry.localHeaderOffset;
    if (local + 30 > directoryOffset || data.readUInt32LE(local) !== signatures.localHeader) {
      throw damaged(`ZIP entry ${quoted(entry.name)} is damaged`);
    }
    const nameLength = data.readUInt16LE(local + 26);
    const extraLength = data.readUInt16LE(local + 28);
    const sameEntry =
      data.readUInt16LE(local + 8) === entry.method &&
      (data.readUInt16LE(local + 6) & 0x0041) === 0 &&
      data.subarray(local + 30, local + 30 + nameLength).equals(entry.nameBytes);
    if (!sameEntry) throw damaged(`ZIP entry ${quoted(entry.name)} does not match its directory entry`);
    entry.dataStart = local + 30 + nameLength + extraLength;
    if (entry.dataStart + entry.compressedSize > directoryOffset) throw damaged(`ZIP entry ${quoted(entry.name)} is damaged`);
  }
  // Entries sharing compressed bytes are a known way to multiply a bomb; real workbooks never do it.
  const byOffset = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let index = 1; index < byOffset.length; index++) {
    const previous = byOffset[index - 1]!;
    if (previous.dataStart + previous.compressedSize > byOffset[index]!.localHeaderOffset) throw fileError('has overlapping ZIP entries');
  }
  return entries;
}

/** Parts that reach outside the workbook: links to other files, data connections, macros. */
const outwardParts: { test: (name: string) => boolean; what: string }[] = [
  { test: (name) => name.startsWith('xl/externallinks/'), what: 'links to other workbooks' },
  { test: (name) => name === 'xl/connections.xml' || name.startsWith('xl/querytables/'), what: 'data connections' },
  { test: (name) => name.endsWith('vbaproject.bin'), what: 'macros' },
];

function checkParts(entries: readonly ZipEntry[]): void {
  const names = entries.map((entry) => entry.name.toLowerCase());
  if (!names.includes('xl/workbook.xml')) throw fileError(`is not an Excel workbook (it has no xl/workbook.xml); upload a ${supportedFormats}`);
  for (const { test, what } of outwardParts) {
    if (names.some(test)) throw fileError(`contains ${what}, which a device list never needs; copy its values into a new workbook`);
  }
}

const doctype = Buffer.from('<!DOCTYPE');
const maxNumberFormatLength = 255;

const stylesPart = 'xl/styles.xml';
const workbookRelationshipsPart = 'xl/_rels/workbook.xml.rels';

/**
 * Inflates every entry with a bound, since a directory entry may understate what its data expands
 * to. XML parts must have no DTD (workbooks never carry one; it is how entity expansion and external
 * entities get in), and number formats must be ones Excel itself could write. Returns the parts read
 * here for later use, by lower-case name.
 */
async function checkContents(data: Buffer, entries: readonly ZipEntry[]): Promise<Map<string, string>> {
  const keptParts = new Map<string, string>();
  for (const entry of entries) {
    const lowerName = entry.name.toLowerCase();
    const isXml = /\.(xml|rels|vml)$/.test(lowerName);
    const keep = lowerName === stylesPart || lowerName === workbookRelationshipsPart;
    const kept: Buffer[] = [];
    let tail = Buffer.alloc(0);
    const inspect = (chunk: Buffer) => {
      if (isXml) {
        if (chunk.includes(doctype) || Buffer.concat([tail, chunk.subarray(0, doctype.length)]).includes(doctype)) {
          throw fileError(`has a document type declaration in ${quoted(entry.name)}, which workbooks never need`);
        }
        tail = Buffer.from(chunk.subarray(Math.max(0, chunk.length - doctype.length + 1)));
      }
      if (keep) kept.push(chunk);
    };

    const compressed = data.subarray(entry.dataStart, entry.dataStart + entry.compressedSize);
    if (entry.method === 0) {
      inspect(compressed);
    } else {
      const inflater = createInflateRaw();
      inflater.end(compressed);
      let produced = 0;
      try {
        for await (const chunk of inflater as AsyncIterable<Buffer>) {
          produced += chunk.length;
          if (produced > entry.uncompressedSize) {
            throw fileError(`has a ZIP entry ${quoted(entry.name)} that holds more data than its directory entry declares (a ZIP bomb?)`);
          }
          inspect(chunk);
        }
      } catch (error) {
        if (error instanceof ServiceError) throw error;
        throw damaged(`ZIP entry ${quoted(entry.name)} cannot be inflated`);
      }
      if (produced !== entry.uncompressedSize) throw damaged(`ZIP entry ${quoted(entry.name)} is shorter than its directory entry says`);
    }
    if (keep) keptParts.set(lowerName, Buffer.concat(kept).toString('utf8'));
  }
  const styles = keptParts.get(stylesPart);
  if (styles !== undefined) checkNumberFormats(styles);
  return keptParts;
}

/**
 * The workbook's relationships with every target relative to `xl/`. Writers such as openpyxl (and
 * pandas through it) name parts from the package root (`/xl/worksheets/sheet1.xml`), as OOXML
 * allows; exceljs finds a worksheet's name only through a relative target.
 */
function relativeWorkbookTargets(relationships: string): string {
  return relationships.replace(/(\sTarget\s*=\s*)(["'])\/([^"']*)\2/g, (_match, before: string, quote: string, path: string) => {
    const relative = path.startsWith('xl/') ? path.slice('xl/'.length) : `../${path}`;
    return `${before}${quote}${relative}${quote}`;
  });
}

function decodeXmlEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{1,8});/g, (entity, name: string) => {
    if (name.startsWith('#')) {
      const code = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return code <= 0x10ffff ? String.fromCodePoint(code) : entity;
    }
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[name] ?? entity;
  });
}

/**
 * exceljs tests each number cell's format with a regular expression that takes quadratic time on a
 * long format with an unclosed `[`. Excel writes formats of at most 255 characters with balanced
 * brackets; anything else is refused before exceljs reads a cell.
 */
function checkNumberFormats(styles: string): void {
  const attribute = 'formatCode';
  let at = 0;
  while ((at = styles.indexOf(attribute, at)) !== -1) {
    let index = at + attribute.length;
    while (/\s/.test(styles[index] ?? '')) index++;
    if (styles[index] !== '=') {
      at = index;
      continue;
    }
    index++;
    while (/\s/.test(styles[index] ?? '')) index++;
    const quote = styles[index];
    if (quote !== '"' && quote !== "'") {
      at = index;
      continue;
    }
    const close = styles.indexOf(quote, index + 1);
    const raw = close === -1 ? undefined : styles.slice(index + 1, close);
    const format = raw !== undefined && raw.length <= maxNumberFormatLength * 10 ? decodeXmlEntities(raw) : undefined;
    const lastOpen = format?.lastIndexOf('[') ?? -1;
    if (format === undefined || format.length > maxNumberFormatLength || (lastOpen !== -1 && lastOpen > format.lastIndexOf(']'))) {
      throw fileError('has a malformed number format in its styles; copy its values into a new workbook');
    }
    at = close + 1;
  }
}

/** The parts exceljs reads, and in the order that lets it stream the worksheets without temporary files. */
const exceljsLeadingParts = ['xl/workbook.xml', 'xl/_rels/workbook.xml.rels', 'xl/styles.xml', 'xl/sharedStrings.xml'];
const worksheetPart = /^xl\/worksheets\/sheet\d+\.xml$/;
const emptyParts: Record<string, string> = {
  'xl/_rels/workbook.xml.rels':
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"/>',
  'xl/sharedStrings.xml':
    '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="0" uniqueCount="0"/>',
};

interface RebuiltEntry {
  nameBytes: Buffer;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  data: Buffer;
}

/**
 * A fresh archive of the checked entries exceljs reads, some parts replaced by what was made of
 * them here. Its reader walks local headers in order, trusting them; here every local header is
 * written from the checked directory entry, so no hidden entry and no understated size can reach it.
 */
function* rebuiltArchive(data: Buffer, entries: readonly ZipEntry[], replacements: ReadonlyMap<string, string>): Generator<Buffer> {
  const byName = new Map(entries.map((entry) => [entry.name, entry]));
  const chosen: RebuiltEntry[] = [];
  const take = (entry: ZipEntry) =>
    chosen.push({ ...entry, flags: entry.flags & 0x0800, data: data.subarray(entry.dataStart, entry.dataStart + entry.compressedSize) });
  const store = (name: string, text: string) => {
    const content = Buffer.from(text);
    const size = content.length;
    chosen.push({ nameBytes: Buffer.from(name), flags: 0, method: 0, crc32: crc32(content), compressedSize: size, uncompressedSize: size, data: content });
  };
  for (const name of exceljsLeadingParts) {
    const entry = byName.get(name);
    const replacement = replacements.get(name);
    if (replacement !== undefined) store(name, replacement);
    else if (entry) take(entry);
    else if (emptyParts[name]) store(name, emptyParts[name]);
  }
  for (const entry of entries) if (worksheetPart.test(entry.name)) take(entry);

  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of chosen) {
    const local = Buffer.alloc(30);
    local.writeUInt32LE(signatures.localHeader, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(entry.flags, 6);
    local.writeUInt16LE(entry.method, 8);
    local.writeUInt32LE(entry.crc32, 14);
    local.writeUInt32LE(entry.compressedSize, 18);
    local.writeUInt32LE(entry.uncompressedSize, 22);
    local.writeUInt16LE(entry.nameBytes.length, 26);
    yield local;
    yield entry.nameBytes;
    for (let at = 0; at < entry.data.length; at += 64 * 1024) yield entry.data.subarray(at, at + 64 * 1024);

    const header = Buffer.alloc(46);
    header.writeUInt32LE(signatures.centralHeader, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(20, 6);
    header.writeUInt16LE(entry.flags, 8);
    header.writeUInt16LE(entry.method, 10);
    header.writeUInt32LE(entry.crc32, 16);
    header.writeUInt32LE(entry.compressedSize, 20);
    header.writeUInt32LE(entry.uncompressedSize, 24);
    header.writeUInt16LE(entry.nameBytes.length, 28);
    header.writeUInt32LE(offset, 42);
    central.push(header, entry.nameBytes);
    offset += 30 + entry.nameBytes.length + entry.data.length;
  }
  const directory = Buffer.concat(central);
  const endRecord = Buffer.alloc(22);
  endRecord.writeUInt32LE(signatures.endOfCentralDirectory, 0);
  endRecord.writeUInt16LE(chosen.length, 8);
  endRecord.writeUInt16LE(chosen.length, 10);
  endRecord.writeUInt32LE(directory.length, 12);
  endRecord.writeUInt32LE(offset, 16);
  yield directory;
  yield endRecord;
}

function columnLetter(position: number): string {
  let letters = '';
  for (let n = position + 1; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters;
  return letters;
}

/** Dates as ISO 8601: the displayed form depends on the viewer's locale, which the file does not carry. */
function dateText(date: Date): Omit<SheetCell, 'position'> {
  if (Number.isNaN(date.getTime())) return { problem: 'holds a date the spreadsheet cannot show' };
  const iso = date.toISOString();
  return { text: iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso.slice(0, 19) };
}

/** Excel keeps 15 significant digits and shows no more; longer numbers were already rounded. */
function numberText(value: number): Omit<SheetCell, 'position'> {
  if (!Number.isFinite(value)) return { problem: 'holds a number the spreadsheet cannot show', numeric: true };
  if (Math.abs(value) >= 1e15) {
    return {
      text: String(value),
      numeric: true,
      problem: 'is a number longer than the 15 digits a spreadsheet keeps, so it was rounded; format the column as Text and enter it again',
    };
  }
  return { text: String(Number(value.toPrecision(15))), numeric: true };
}

/** The text a cell shows. A formula is never evaluated, and its cached result is not used either. */
function xlsxCell(value: unknown): Omit<SheetCell, 'position'> {
  if (value === null || value === undefined) return {};
  if (typeof value === 'string') return { text: value };
  if (typeof value === 'number') return numberText(value);
  if (typeof value === 'boolean') return { text: value ? 'TRUE' : 'FALSE' };
  if (value instanceof Date) return dateText(value);
  if (typeof value === 'object') {
    // exceljs gives a shared formula's other cells `{ formula: '' }`, so test for the key, not its value.
    if ('formula' in value || 'sharedFormula' in value) return { problem: formulaReason };
    if ('error' in value) return { problem: `holds the spreadsheet error ${String(value.error)}` };
    if ('richText' in value && Array.isArray(value.richText)) {
      return { text: value.richText.map((run: { text?: unknown }) => (typeof run?.text === 'string' ? run.text : '')).join('') };
    }
    if ('sharedString' in value) return { problem: 'refers to text the workbook does not contain' };
    if ('hyperlink' in value && 'text' in value) return xlsxCell(value.text);
  }
  return { problem: 'holds a kind of value that is not accepted' };
}

type WorkbookModel = { model?: { sheets?: { name?: string }[] } };

async function* readXlsx(data: Buffer, limits: SheetLimits): AsyncGenerator<SheetRow> {
  const entries = zipDirectory(data, limits);
  checkParts(entries);
  const parts = await checkContents(data, entries);
  const relationships = parts.get(workbookRelationshipsPart);
  const replacements = new Map(relationships === undefined ? [] : [[workbookRelationshipsPart, relativeWorkbookTargets(relationships)]]);

  // Hyperlinks ignored: exceljs never follows them, and nothing here needs their targets.
  const reader = new ExcelJS.stream.xlsx.WorkbookReader(Readable.from(rebuiltArchive(data, entries, replacements)), {
    worksheets: 'emit',
    sharedStrings: 'cache',
    styles: 'cache',
    hyperlinks: 'ignore',
    entries: 'ignore',
  });
  const label = (position: number) => `column ${columnLetter(position)}`;
  let sheetRead = false;
  let layout: Layout | undefined;
  let rows = 0;
  let rowElements = 0;
  let previous = 0;
  const maxLines = maxLinesFor(limits);
  try {
    for await (const worksheet of reader) {
      const sheets = (reader as unknown as WorkbookModel).model?.sheets;
      const first = !sheets?.length || (worksheet as unknown as { name?: string }).name === sheets[0]?.name;
      if (sheetRead || !first) continue;
      sheetRead = true;
      for await (const row of worksheet) {
        if (++rowElements > maxLines) throw tooManyLines(maxLines);
        // Row numbers are optional in the format; without one a row follows the previous.
        const line = Number.isSafeInteger(row.number) && row.number > 0 ? row.number : previous + 1;
        previous = line;
        const cells: SheetCell[] = [];
        row.eachCell({ includeEmpty: false }, (cell, column) => cells.push({ position: column - 1, ...xlsxCell(cell.value) }));
        if (isEmptyRow(cells)) continue;
        if (!layout) {
          layout = headerLayout(line, cells, label);
          continue;
        }
        if (++rows > limits.maxRows) throw tooManyRows(limits.maxRows);
        yield deviceRow(line, layout, cells, limits);
      }
    }
  } catch (error) {
    if (error instanceof ServiceError) throw error;
    throw damaged(error instanceof Error ? error.message.slice(0, 200) : 'its contents cannot be parsed');
  }
  if (!sheetRead) throw fileError('has no worksheet');
  if (!layout) throw fileError('is empty; its first row must name the columns');
}
