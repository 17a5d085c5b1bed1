/**
 * The shape of the code, checked: folders stand on floors and import only from their own floor or
 * below (the composition root, `service/` and `scripts/`, may import anything); no two folders import
 * each other, even through others; only `db/` and the stores that own a table speak SQL; routes,
 * activities and workflows never touch the database.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

/**
 * Floors, lowest first. A file belongs to the first floor with a pattern it matches. The workflow
 * contracts (ids, signals, queries, updates, the records they carry) are what every part shares,
 * so they sit low; the workflows themselves sit above the activities they schedule.
 */
export const floors: Array<{ name: string; holds: RegExp[] }> = [
  { name: 'foundation', holds: [/^foundation\//, /^x509\//] },
  { name: 'database', holds: [/^db\//] },
  { name: 'contracts', holds: [/^contracts\//] },
  { name: 'records', holds: [/^custody\//, /^access\//, /^audit\//] },
  { name: 'devices', holds: [/^adapters\//] },
  { name: 'domain', holds: [/^registry\//, /^pki\//, /^configuration\//, /^discovery\//, /^alerts\//] },
  { name: 'processes', holds: [/^provisioning\//, /^bulk\//, /^zero-touch\//, /^fleet\//, /^observability\//] },
  { name: 'activities', holds: [/^activities\//] },
  { name: 'workflows', holds: [/^workflows\//] },
  { name: 'http', holds: [/^api\//] },
  { name: 'composition', holds: [/^service\//, /^scripts\//] },
];

interface ImportEdge {
  from: string;
  to: string;
  typeOnly: boolean;
  /** The bare package, for imports of packages. */
  specifier: string;
}

function productionFiles(): string[] {
  return execFileSync('git', ['ls-files', '*.ts', '*.mjs', '*.cjs'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter((file) => file && !file.endsWith('.test.ts') && !file.startsWith('test/') && !file.startsWith('scripts/simulators/'));
}

const importPattern =
  /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)|\brequire\(\s*['"]([^'"]+)['"]\s*\)/g;

function resolveRelative(from: string, specifier: string, files: Set<string>): string | undefined {
  const base = path.normalize(path.join(path.dirname(from), specifier));
  return [base, `${base}.ts`, `${base}.mjs`, `${base}.cjs`, `${base}/index.ts`].find((candidate) => files.has(candidate));
}

export function importEdges(): ImportEdge[] {
  const files = productionFiles();
  const known = new Set(files);
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const text = readFileSync(path.join(root, file), 'utf8');
    for (const match of text.matchAll(importPattern)) {
      const specifier = match[3] ?? match[4] ?? match[5]!;
      const typeOnly = Boolean(match[2]);
      if (specifier.startsWith('.')) {
        const to = resolveRelative(file, specifier, known);
        if (to) edges.push({ from: file, to, typeOnly, specifier });
      } else {
        edges.push({ from: file, to: '', typeOnly, specifier });
      }
    }
  }
  return edges;
}

export function floorOf(file: string): number {
  const index = floors.findIndex((floor) => floor.holds.some((pattern) => pattern.test(file)));
  if (index < 0) throw new Error(`${file} stands on no floor: add its folder to one`);
  return index;
}

const folderOf = (file: string) => file.split('/')[0]!;
const composition = floors.length - 1;

/** Starting a workflow names its function's type; nothing of the workflow runs there. */
const namesWorkflowType = (edge: ImportEdge) => edge.typeOnly && floors[floorOf(edge.to)]!.name === 'workflows';

/**
 * Folders that import each other through a chain: each strongly connected group of two or more,
 * found with Tarjan's algorithm over the folder graph.
 */
function folderCycles(edges: ImportEdge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const edge of edges) {
    if (!edge.to || namesWorkflowType(edge)) continue;
    const [a, b] = [folderOf(edge.from), folderOf(edge.to)];
    if (a === b || floorOf(edge.from) === composition) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)!.add(b);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const group: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        group.push(member);
      } while (member !== node);
      if (group.length > 1) groups.push(group.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return groups;
}

/** Files that own a table: they import it from the schema and use it in queries. */
function tablesOwnedBy(edges: ImportEdge[]): Map<string, string[]> {
  const schema = readFileSync(path.join(root, 'db/schema.ts'), 'utf8');
  const tables = [...schema.matchAll(/export const (\w+) = pgTable\(/g)].map((match) => match[1]!);
  const owners = new Map<string, string[]>();
  for (const file of new Set(edges.filter((edge) => edge.to === 'db/schema.ts' && !edge.typeOnly).map((edge) => edge.from))) {
    if (file.startsWith('db/')) continue;
    const text = readFileSync(path.join(root, file), 'utf8');
    const imported = /import\s*\{([^}]*)\}\s*from\s*['"][^'"]*db\/schema['"]/.exec(text)?.[1] ?? '';
    const names = imported.split(',').map((name) => name.trim().replace(/^type\s+/, '').replace(/\s+as\s+\w+$/, '')).filter(Boolean);
    for (const table of tables.filter((table) => names.includes(table))) owners.set(table, [...(owners.get(table) ?? []), file]);
  }
  return owners;
}

describe('the shape of the code', () => {
  const edges = importEdges();

  it('imports only from the same floor or below, except in the composition root', () => {
    const upward = edges
      .filter((edge) => edge.to && floorOf(edge.from) !== composition && floorOf(edge.to) > floorOf(edge.from))
      .filter((edge) => !namesWorkflowType(edge))
      .map((edge) => `${edge.from} -> ${edge.to}`);
    expect([...new Set(upward)]).toEqual([]);
  });

  it('has no two folders that import each other, directly or through others', () => {
    expect(folderCycles(edges).map((group) => group.join(' '))).toEqual([]);
  });

  it('gives each table one owner, its store', () => {
    const shared = [...tablesOwnedBy(edges)].filter(([, files]) => files.length > 1).map(([table, files]) => `${table}: ${files.sort().join(', ')}`);
    expect(shared).toEqual([]);
  });

  it('speaks SQL only in db/ and in the stores', () => {
    const owners = tablesOwnedBy(edges);
    const stores = new Set([...owners].filter(([, files]) => files.length === 1).flatMap(([, files]) => files));
    const drizzle = edges
      .filter((edge) => edge.specifier.startsWith('drizzle-orm') && !edge.from.startsWith('db/') && !stores.has(edge.from))
      .map((edge) => edge.from);
    expect([...new Set(drizzle)]).toEqual([]);
  });

  it('keeps routes, activities and workflows off the database', () => {
    const direct = edges
      .filter((edge) => /^(api|activities|workflows)\//.test(edge.from) && (edge.to.startsWith('db/') || edge.specifier.startsWith('drizzle-orm')))
      .map((edge) => `${edge.from} -> ${edge.to || 'drizzle-orm'}`);
    expect([...new Set(direct)]).toEqual([]);
  });
});
