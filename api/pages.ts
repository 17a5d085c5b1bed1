/**
 * The web pages the service serves itself: the onboarding wizard operators walk a device through
 * (sign in with an API key, describe the device, check it against its template, start and follow
 * the run), the bulk page (a device list checked, started, followed and steered), the fleet page
 * (the tenant's devices, one device whole, its lifecycle actions), and the page an installer's
 * phone opens from an enrolment QR code. All are static: they hold no secret, and talk only to this
 * API, from this origin, with the caller's own credentials or the single-use token in the URL
 * fragment (enrolment).
 */
import { readFileSync } from 'node:fs';
import express, { type Response, type Router } from 'express';

export const pagesMountPath = '/ui';

const directory = new URL('./pages/', import.meta.url);

/** Scripts and styles from this origin only; no inline code, no framing, no form posts elsewhere. */
const pageSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface StaticFile {
  body: Buffer;
  contentType: string;
}

const contentTypes: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

function load(name: string): StaticFile {
  const extension = name.slice(name.lastIndexOf('.') + 1);
  return { body: readFileSync(new URL(name, directory)), contentType: contentTypes[extension]! };
}

const pages: Record<string, string> = { onboard: 'onboard.html', enrol: 'enrol.html', fleet: 'fleet.html', bulk: 'bulk.html' };
const assetNames = ['pages.css', 'api-client.js', 'onboard.js', 'enrol.js', 'fleet.js', 'bulk.js'];

export function pagesRouter(): Router {
  const files = new Map([...Object.values(pages), ...assetNames].map((name) => [name, load(name)]));
  const send = (res: Response, file: StaticFile) => {
    res.set({ 'Content-Type': file.contentType, 'Content-Security-Policy': pageSecurityPolicy }).send(file.body);
  };
  const router = express.Router();
  for (const [path, name] of Object.entries(pages)) router.get(`/${path}`, (_req, res) => send(res, files.get(name)!));
  router.get('/assets/:file', (req, res, next) => {
    const file = assetNames.includes(req.params.file) ? files.get(req.params.file) : undefined;
    if (!file) return next();
    send(res, file);
  });
  return router;
}

const htmlPage = (summary: string) => ({
  summary,
  tags: ['pages'],
  security: [],
  responses: { 200: { description: 'The page', content: { 'text/html': { schema: { type: 'string' } } } } },
});

export const pagesOpenApiPaths = {
  [`${pagesMountPath}/onboard`]: {
    get: { operationId: 'onboardingWizardPage', ...htmlPage('The onboarding wizard: one device, step by step, with an API key') },
  },
  [`${pagesMountPath}/fleet`]: {
    get: {
      operationId: 'fleetPage',
      ...htmlPage("The fleet: the tenant's devices with their health, firmware and certificates; one device's runs, alerts and lifecycle actions"),
    },
  },
  [`${pagesMountPath}/bulk`]: {
    get: {
      operationId: 'bulkPage',
      ...htmlPage('Bulk provisioning: check a device list, start the job, follow and steer it live'),
    },
  },
  [`${pagesMountPath}/enrol`]: {
    get: {
      operationId: 'enrolmentPage',
      ...htmlPage("The page an enrolment QR code opens on an installer's phone; the token rides in the URL fragment"),
    },
  },
  [`${pagesMountPath}/assets/{file}`]: {
    get: {
      operationId: 'pageAsset',
      summary: "The pages' scripts and style sheet",
      tags: ['pages'],
      security: [],
      parameters: [{ name: 'file', in: 'path', required: true, schema: { type: 'string', enum: assetNames } }],
      responses: {
        200: { description: 'The file', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } },
        404: { description: 'No such file' },
      },
    },
  },
};
