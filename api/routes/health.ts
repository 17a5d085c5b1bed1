import { Router } from 'express';

export interface HealthCheck {
  name: string;
  check: () => Promise<void>;
}

/** Reports each dependency the service needs; 503 when any is unreachable. */
export function healthRoutes(checks: HealthCheck[]): Router {
  const router = Router();
  router.get('/healthz', async (_req, res) => {
    const results = await Promise.all(
      checks.map(async ({ name, check }) => {
        const started = performance.now();
        try {
          await Promise.race([
            check(),
            new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 3 s')), 3000).unref()),
          ]);
          return [name, { status: 'up', latencyMs: Math.round(performance.now() - started) }] as const;
        } catch (error) {
          return [name, { status: 'down', error: error instanceof Error ? error.message : String(error) }] as const;
        }
      }),
    );
    const healthy = results.every(([, result]) => result.status === 'up');
    res.status(healthy ? 200 : 503).json({ status: healthy ? 'ok' : 'degraded', checks: Object.fromEntries(results) });
  });
  return router;
}
