/**
 * A device list given back with a last column of the reasons its rows were refused, in the format
 * it came in (CSV or .xlsx), so the operator fixes the file where they keep it. Every value is
 * written formula-safe; passwords are never given back (the column is left empty).
 */
import type { RowProblem } from './bulk-import';
import { deviceSheetColumnNames } from './columns';
import { sheetXlsx, toCsv } from './spreadsheet-output';
import { readDeviceSheet, sheetFormat, type SheetFile } from './spreadsheet';

export const problemsColumn = 'problems';
const withheldColumns = new Set(['password']);

export interface AnnotatedSheet {
  body: string | Buffer;
  contentType: string;
  fileName: string;
}

export async function annotatedSheet(file: SheetFile, problems: readonly RowProblem[]): Promise<AnnotatedSheet> {
  const byLine = new Map<number, string[]>();
  for (const { line, column, reason } of problems) byLine.set(line, [...(byLine.get(line) ?? []), `${column}: ${reason}`]);
  const header = [...deviceSheetColumnNames, problemsColumn];
  const rows: string[][] = [];
  for await (const row of readDeviceSheet(file)) {
    rows.push([
      ...deviceSheetColumnNames.map((column) => (withheldColumns.has(column) ? '' : (row.values[column] ?? ''))),
      (byLine.get(row.line) ?? []).join('; '),
    ]);
  }
  const base = file.fileName.replace(/\.[^.]+$/, '') || 'devices';
  if (sheetFormat(file) === 'xlsx') {
    return {
      body: await sheetXlsx('Devices', header, rows),
      contentType: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
      fileName: `${base}-with-reasons.xlsx`,
    };
  }
  return { body: toCsv(header, rows, { bom: true }), contentType: 'text/csv', fileName: `${base}-with-reasons.csv` };
}
