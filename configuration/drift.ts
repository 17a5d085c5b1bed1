/**
 * Configuration drift: where the settings a device runs differ from the settings it should run.
 * Pure, so the drift check, the API and tests all judge a device the same way.
 */
import { canonicalJson } from '../foundation/canonical-json';

export interface DriftOptions {
  /**
   * Setting paths the device keeps secret or cannot report (`removeFactoryAdmin`, `snmp.community`,
   * `users[].password` for that member of every list element); they and everything under them
   * are left out of the comparison.
   */
  unreported?: readonly string[];
  /**
   * Settings every device of the protocol has whether or not a configuration sets them (an ONVIF
   * camera's time zone): compared when the desired configuration sets them, otherwise not ours to judge.
   */
  inherent?: readonly string[];
}

/**
 * The paths (`ntp.servers`, `management.passwordLogin`) at which running settings differ from the
 * desired ones, sorted. Objects are compared member by member; lists as a whole, since the order
 * of, say, NTP servers is itself a setting. A setting only one side has is drift too: one the
 * device lost, or one added on the device that we never asked for.
 */
export function driftedSettings(
  desired: Record<string, unknown>,
  running: Record<string, unknown>,
  options: DriftOptions = {},
): string[] {
  const unreported = [...(options.unreported ?? []), ...(options.inherent ?? []).filter((path) => !isSet(desired, path))];
  const drifted: string[] = [];

  const compare = (wanted: unknown, actual: unknown, path: string) => {
    if (isObject(wanted) && isObject(actual)) {
      const names = new Set([...present(wanted), ...present(actual)]);
      for (const name of names) compare(wanted[name], actual[name], path === '' ? name : `${path}.${name}`);
      return;
    }
    if (wanted === undefined || actual === undefined || canonicalJson(wanted) !== canonicalJson(actual)) drifted.push(path);
  };

  compare(reportableSettings(desired, unreported), reportableSettings(running, unreported), '');
  return drifted.sort();
}

/**
 * `settings` without the unreported paths: what a device's report can be compared with, and what
 * to hash (canonically) to compare with the hash of a read-back.
 */
export function reportableSettings(settings: Record<string, unknown>, unreported: readonly string[] = []): Record<string, unknown> {
  let result: unknown = settings;
  for (const path of unreported) result = without(result, path.split('.'));
  return result as Record<string, unknown>;
}

/** A copy of `value` without the member at `segments`; `name[]` steps into every element of a list. */
function without(value: unknown, segments: readonly string[]): unknown {
  const [segment, ...rest] = segments;
  if (segment === undefined || !isObject(value)) return value;
  const eachElement = segment.endsWith('[]');
  const name = eachElement ? segment.slice(0, -2) : segment;
  if (!(name in value)) return value;
  const copy = { ...value };
  if (rest.length === 0) {
    delete copy[name];
  } else if (eachElement) {
    const list = copy[name];
    if (Array.isArray(list)) copy[name] = list.map((element) => without(element, rest));
  } else {
    copy[name] = without(copy[name], rest);
  }
  return copy;
}

/** Whether `settings` has a value at a dotted path. */
function isSet(settings: Record<string, unknown>, path: string): boolean {
  let at: unknown = settings;
  for (const name of path.split('.')) {
    if (!isObject(at) || at[name] === undefined) return false;
    at = at[name];
  }
  return true;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Member names with a value: an undefined member is no setting, as in JSON. */
function present(value: Record<string, unknown>): string[] {
  return Object.keys(value).filter((name) => value[name] !== undefined);
}
