/**
 * Files users open in spreadsheet software: reports and the device list templates. Every value is
 * written so that Excel, LibreOffice or Google Sheets shows it as text and never runs it as a
 * formula, because values such as device names and error messages come from outside.
 */
import ExcelJS from 'exceljs';
import { deviceSheetColumns } from './columns';

/** Leading characters that make spreadsheet software treat a cell as a formula (OWASP CSV injection). */
const formulaStart = /^[=+\-@\t\r]/;

/**
 * Text that spreadsheet software shows as-is. Numbers stay numbers: a number is never a formula, and
 * prefixing `-5` would turn it into text.
 */
export function escapeSpreadsheetValue(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  return formulaStart.test(value) ? `'${value}` : value;
}

/** RFC 4180 quoting; `;` and tab are quoted too, since some locales' spreadsheets split on them. */
function csvField(value: string): string {
  return /[",;\t\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function toCsv(
  header: readonly string[],
  rows: readonly (readonly (string | number | null | undefined)[])[],
  options: { bom?: boolean } = {},
): string {
  const lines = [header, ...rows].map((cells) => cells.map((cell) => csvField(escapeSpreadsheetValue(cell))).join(','));
  // Excel reads a CSV as UTF-8 only when it starts with a byte-order mark.
  return `${options.bom ? '\uFEFF' : ''}${lines.map((line) => `${line}\r\n`).join('')}`;
}

const templateHeader = deviceSheetColumns.map((column) => column.name);
const templateExample = deviceSheetColumns.map((column) => column.example);

/** The header and one example row; with a byte-order mark so Excel keeps non-ASCII names intact. */
export function deviceSheetTemplateCsv(): string {
  return toCsv(templateHeader, [templateExample], { bom: true });
}

/** Sheet "Devices" (header and an example row) and sheet "Columns" explaining each column. */
export async function deviceSheetTemplateXlsx(): Promise<Buffer> {
  const workbook = new ExcelJS.Workbook();
  workbook.creator = 'Device provisioning service';

  const devices = workbook.addWorksheet('Devices', { views: [{ state: 'frozen', ySplit: 1 }] });
  devices.columns = deviceSheetColumns.map((column) => ({
    header: column.name,
    key: column.name,
    width: Math.max(14, column.example.length + 4),
    // Text format, so Excel keeps a MAC such as 001122334455 or a serial such as 0042 as typed.
    style: { numFmt: '@' },
  }));
  devices.getRow(1).font = { bold: true };
  // Cells written as strings are stored as text in the workbook, never as formulas.
  devices.addRow(templateExample);

  const columns = workbook.addWorksheet('Columns');
  columns.columns = [
    { header: 'column', key: 'name', width: 16 },
    { header: 'required', key: 'required', width: 10 },
    { header: 'description', key: 'description', width: 100 },
    { header: 'example', key: 'example', width: 22 },
  ];
  columns.getRow(1).font = { bold: true };
  for (const column of deviceSheetColumns) {
    columns.addRow({
      name: column.name,
      required: column.required ? 'yes' : 'no',
      description: column.description,
      example: column.example,
    });
  }

  return Buffer.from(await workbook.xlsx.writeBuffer());
}

/** One sheet of text cells under a bold, frozen header: what an export opens as in Excel. */
export async function sheetXlsx(
  sheetName: string,
  header: readonly string[],
  rows: readonly (readonly (string | number | null | undefined)[])[],
): Promise<Buffer> {
  const workbook = new ExcelJS.Workbook();
  workbook.creator = 'Device provisioning service';
  const sheet = workbook.addWorksheet(sheetName, { views: [{ state: 'frozen', ySplit: 1 }] });
  sheet.columns = header.map((name) => ({ header: name, key: name, width: Math.max(14, name.length + 4), style: { numFmt: '@' } }));
  sheet.getRow(1).font = { bold: true };
  // Strings are stored as text, never as formulas; the escape also keeps them from becoming one on re-save as CSV.
  for (const cells of rows) sheet.addRow(cells.map((cell) => (typeof cell === 'number' ? cell : escapeSpreadsheetValue(cell))));
  return Buffer.from(await workbook.xlsx.writeBuffer());
}
