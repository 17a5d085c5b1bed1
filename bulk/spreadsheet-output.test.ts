import ExcelJS from 'exceljs';
import Papa from 'papaparse';
import { describe, expect, it } from 'vitest';
import { deviceSheetColumns } from './columns';
import { readDeviceSheet, type SheetRow } from './spreadsheet';
import { deviceSheetTemplateCsv, deviceSheetTemplateXlsx, escapeSpreadsheetValue, toCsv } from './spreadsheet-output';

async function rowsOf(data: Buffer, fileName: string): Promise<SheetRow[]> {
  const rows: SheetRow[] = [];
  for await (const row of readDeviceSheet({ data, fileName })) rows.push(row);
  return rows;
}

const examples = Object.fromEntries(deviceSheetColumns.map((c) => [c.name, c.example]));

describe('escapeSpreadsheetValue', () => {
  it('prefixes a quote to text that spreadsheet software would run as a formula', () => {
    for (const value of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx', '=HYPERLINK("http://evil","x")']) {
      expect(escapeSpreadsheetValue(value)).toBe(`'${value}`);
    }
  });

  it('leaves ordinary text, numbers (even negative ones) and empty values as they are', () => {
    expect(escapeSpreadsheetValue('CAM-0001')).toBe('CAM-0001');
    expect(escapeSpreadsheetValue('a=b')).toBe('a=b');
    expect(escapeSpreadsheetValue(-5)).toBe('-5');
    expect(escapeSpreadsheetValue(42)).toBe('42');
    expect(escapeSpreadsheetValue(null)).toBe('');
    expect(escapeSpreadsheetValue(undefined)).toBe('');
  });
});

describe('toCsv', () => {
  it('quotes per RFC 4180, ends every record with CRLF and escapes formula-like cells', () => {
    const csv = toCsv(['line', 'error'], [
      [2, 'refused, "twice"'],
      [3, '=cmd|" /C calc"!A0'],
      [4, 'two\nlines'],
      [5, null],
    ]);
    expect(csv).toBe(
      'line,error\r\n2,"refused, ""twice"""\r\n3,"\'=cmd|"" /C calc""!A0"\r\n4,"two\nlines"\r\n5,\r\n',
    );
    const parsed = Papa.parse<string[]>(csv.trimEnd(), { newline: '\r\n' }).data;
    expect(parsed[1]).toEqual(['2', 'refused, "twice"']);
    expect(parsed[2]).toEqual(['3', '\'=cmd|" /C calc"!A0']);
  });

  it('starts with a UTF-8 byte-order mark only when asked', () => {
    expect(toCsv(['a'], [], { bom: true })).toBe('\uFEFFa\r\n');
    expect(toCsv(['a'], [])).toBe('a\r\n');
  });
});

describe('device list templates', () => {
  it('the CSV template reads back as its example row without problems', async () => {
    const csv = deviceSheetTemplateCsv();
    expect(csv.startsWith('\uFEFFserialNumber,macAddress,address,')).toBe(true);
    expect(await rowsOf(Buffer.from(csv), 'device-list.csv')).toEqual([{ line: 2, values: examples, problems: [] }]);
  });

  it('the Excel template reads back as its example row without problems', async () => {
    const xlsx = await deviceSheetTemplateXlsx();
    expect(xlsx.subarray(0, 2).toString()).toBe('PK');
    expect(await rowsOf(xlsx, 'device-list.xlsx')).toEqual([{ line: 2, values: examples, problems: [] }]);
  });

  it('the Excel template explains every column on a "Columns" sheet, in plain text cells', async () => {
    const workbook = new ExcelJS.Workbook();
    const xlsx = await deviceSheetTemplateXlsx();
    // exceljs declares a Buffer type of its own that Node's Buffer does not satisfy; the bytes are the same.
    await workbook.xlsx.load(xlsx as never);
    expect(workbook.worksheets.map((sheet) => sheet.name)).toEqual(['Devices', 'Columns']);
    const columns = workbook.getWorksheet('Columns')!;
    const described = deviceSheetColumns.map((_, index) => columns.getRow(index + 2).getCell(3).value);
    expect(described).toEqual(deviceSheetColumns.map((c) => c.description));
    for (const sheet of workbook.worksheets) {
      sheet.eachRow((row) => row.eachCell((cell) => expect(typeof cell.value).toBe('string')));
    }
    expect(workbook.getWorksheet('Devices')!.getColumn(2).numFmt).toBe('@');
  });
});
