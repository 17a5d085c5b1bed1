import { operation, type AnyOperation } from '../operation';
import { healthSchema } from '../schemas';

export interface HealthCheck {
  name: string;
  check: () => Promise<void>;
}

/** Reports each dependency the service needs; 503 when any is unreachable. */
export function healthOperations(checks: HealthCheck[]): AnyOperation[] {
  return [
    operation({
      operationId: 'health',
      method: 'get',
      path: '/healthz',
      summary: 'Report database and Temporal reachability',
      tag: 'operations',
      permission: 'public',
      exemptFromRateLimit: true,
      responses: {
        200: { description: 'Every dependency is up', schema: healthSchema },
        503: { description: 'A dependency is down', schema: healthSchema },
      },
      async handle({ res }) {
        const results = await Promise.all(
          checks.map(async ({ name, check }) => {
            const started = performance.now();
            try {
              await Promise.race([
                check(),
                new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 3 s')), 3000).unref()),
              ]);
              return [name, { status: 'up' as const, latencyMs: Math.round(performance.now() - started) }] as const;
            } catch (error) {
              return [name, { status: 'down' as const, error: error instanceof Error ? error.message : String(error) }] as const;
            }
          }),
        );
        const healthy = results.every(([, result]) => result.status === 'up');
        res.status(healthy ? 200 : 503).json({ status: healthy ? 'ok' : 'degraded', checks: Object.fromEntries(results) });
      },
    }),
  ];
}
