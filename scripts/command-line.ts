/**
 * The shape every operator command shares: options parsed strictly with the usage line on any
 * mistake (exit 2), `--help`, and one line on stderr with the command's own exit code when it
 * fails outright.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** The parsed options, or the exit code to end with (0 after `--help`, 2 after a mistake). */
export function readCommandLine<O extends OptionSpec>(
  options: O,
  usage: string,
  args: string[] = process.argv.slice(2),
): ReturnType<typeof parseArgs<{ options: O; args: string[] }>>['values'] | number {
  let values: ReturnType<typeof parseArgs<{ options: O; args: string[] }>>['values'];
  try {
    ({ values } = parseArgs({ options, args }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    return 2;
  }
  if ((values as { help?: boolean }).help) {
    console.log(usage);
    return 0;
  }
  return values;
}

/** A usage mistake the command found itself: print it with the usage line, exit 2. */
export function usageError(message: string, usage: string): number {
  console.error(`${message}\n${usage}`);
  return 2;
}

/** Runs `main` and ends with its exit code, or with `failureCode` and `failing: <message>` if it throws. */
export function runCommand(main: () => Promise<number>, failing: string, failureCode: number): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`${failing}: ${(error as Error).message ?? String(error)}`);
      process.exitCode = failureCode;
    },
  );
}
