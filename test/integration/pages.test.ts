/**
 * The onboarding wizard and the enrolment page in a real browser (Debian's Chromium, headless,
 * driven by Playwright) against the real service and reference devices on loopback: what an
 * operator and an installer see and do, and what the service ends up having done.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
let browser: Browser;
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // Nothing but this machine's loopback: no background traffic, updates or sync.
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

/**
 * With UPDATE_SCREENSHOTS=1 the tests photograph the pages for the README (docs/screenshots), small:
 * a modest viewport, PNG of the visible part only.
 */
async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.UPDATE_SCREENSHOTS !== '1') return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`) });
}
const screenshots = path.resolve(import.meta.dirname, '../../docs/screenshots');

/** A fresh page that fails the test on any script error or refused resource (a CSP violation shows as one). */
async function openPage(options: { mobile?: boolean } = {}): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext(options.mobile ? { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true } : {});
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('console', (entry) => {
    // The service's refusals (401, 400) are answers the pages handle, not page faults.
    if (entry.type() === 'error' && !/status of (400|401|404|409|422)/.test(entry.text())) problems.push(entry.text());
  });
  return { page, problems };
}

describe('the onboarding wizard', () => {
  it('signs in, names a bad MAC next to its field, then provisions the device and shows every step completed', async () => {
    const { request } = await devices.start();
    const { page, problems } = await openPage();
    await page.goto(`${api.baseUrl}/ui/onboard`);

    await page.fill('#api-key', 'dps_not_a_real_key_000000000000000000000000000000');
    await page.click('#sign-in button[type=submit]');
    await expect.poll(() => page.textContent('[data-error-for="api-key"]')).toBe('This key is not valid.');

    await page.fill('#api-key', await api.keyFor('acme', 'operator'));
    await page.click('#sign-in button[type=submit]');
    await expect.poll(() => page.textContent('#signed-in')).toContain('(operator) for tenant acme');

    await page.fill('#serialNumber', request.serialNumber);
    await page.fill('#macAddress', 'not-a-mac');
    await page.fill('#address', request.address);
    await page.selectOption('#protocol', 'https');
    await page.fill('#site', request.site);
    await page.fill('#username', request.credentials.username);
    await page.fill('#password', request.credentials.password);
    await page.click('#device button[type=submit]');
    await page.selectOption('#template', 'default');
    await page.click('#configuration button[type=submit]');

    // The service's reason comes back next to the MAC field, on the step where it is entered.
    const macError = page.locator('[data-error-for="macAddress"]');
    await expect.poll(() => macError.isVisible()).toBe(true);
    expect(await page.isVisible('section[data-step="device"]')).toBe(true);
    expect(await page.getAttribute('#macAddress', 'aria-invalid')).toBe('true');

    await page.fill('#macAddress', request.macAddress);
    await page.click('#device button[type=submit]');
    await page.selectOption('#template', 'default');
    await page.click('#configuration button[type=submit]');
    await expect.poll(() => page.textContent('#plan')).toContain(`Ready: ${request.serialNumber} with template default`);
    // Checking started nothing.
    expect((await api.call('GET', `/api/v1/provisioning/devices/provision:acme:${request.serialNumber}/status`)).status).toBe(404);

    await page.click('#start');
    await expect.poll(() => page.textContent('#run'), { timeout: 60_000 }).toContain(`Completed: ${request.serialNumber} is active with certificate`);
    const statuses = await page.locator('#steps tr td:nth-child(2)').allTextContents();
    expect(statuses.length).toBeGreaterThanOrEqual(8);
    expect(statuses.every((status) => status === 'completed' || status === 'skipped')).toBe(true);

    const record = await api.call('GET', `/api/v1/provisioning/devices/provision:acme:${request.serialNumber}/status`);
    expect(record.body.status).toBe('completed');
    expect(await page.textContent('#run')).toContain(record.body.certificateInfo.serialNumber);
    await screenshot(page, 'onboard');
    expect(problems).toEqual([]);
  }, 90_000);
});

describe('the bulk page', () => {
  it('shows the two bad rows of a file with line, column and reason, takes the fixed file, and follows the job to the end through a pause and a resume', async () => {
    // Each device answers slowly, so the job is still under way while it is paused and resumed.
    const started = await Promise.all([0, 1, 2, 3].map(() => devices.start({ site: 'bulk-hall', faults: { latencyMs: { '/api/v1/identity': 700 } } })));
    const header = 'serialNumber,macAddress,address,protocol,deviceType,site,name,username,password';
    const row = ({ request }: (typeof started)[number], index: number, changes: Partial<Record<'macAddress' | 'address', string>> = {}) =>
      [request.serialNumber, changes.macAddress ?? request.macAddress, changes.address ?? request.address, 'https', 'camera', 'bulk-hall', `Hall camera ${index}`, request.credentials.username, request.credentials.password].join(',');
    const broken = [header, row(started[0]!, 0), row(started[1]!, 1, { macAddress: 'not-a-mac' }), row(started[2]!, 2), row(started[3]!, 3, { address: '' })].join('\n');
    const fixed = [header, ...started.map((device, index) => row(device, index))].join('\n');
    const files = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'bulk-page-'));
    writeFileSync(path.join(files, 'hall.csv'), broken);

    const { page, problems } = await openPage();
    await page.goto(`${api.baseUrl}/ui/bulk`);
    await page.fill('#api-key', await api.keyFor('acme', 'operator'));
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector('section[data-view="upload"]:not([hidden])');
    await page.selectOption('#template', 'default');
    await page.fill('#concurrency', '1');
    await page.setInputFiles('#file', path.join(files, 'hall.csv'));
    await page.click('#upload button[type=submit]');

    await page.waitForSelector('#problems-view:not([hidden])');
    const refused = async () => (await page.locator('#problems tr').allTextContents()).length;
    expect(await refused()).toBe(2);
    expect(await page.locator('#problems tr td:first-child').allTextContents()).toEqual(['3', '5']);
    expect(await page.textContent('#problems')).toContain('macAddress');
    expect(await page.isDisabled('#start')).toBe(true);
    // Sorted by column on request, and said so to assistive technology.
    await page.click('[data-sort="column"]');
    expect(await page.locator('#problems tr td:nth-child(2)').allTextContents()).toEqual(['address', 'macAddress']);
    expect(await page.getAttribute('th:has([data-sort="column"])', 'aria-sort')).toBe('ascending');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-reasons')]);
    const withReasons = readFileSync((await download.path())!, 'utf8').replace(/^\uFEFF/, '').trim().split('\r\n');
    expect(withReasons[0]!.endsWith(',problems')).toBe(true);
    expect(withReasons[2]).toContain('macAddress:');
    expect(withReasons[1]!.endsWith(',')).toBe(true);

    writeFileSync(path.join(files, 'hall.csv'), fixed);
    await page.setInputFiles('#file', path.join(files, 'hall.csv'));
    await page.click('#upload button[type=submit]');
    await expect.poll(() => page.textContent('#plan')).toContain('Ready: 4 devices with template default');
    await screenshot(page, 'bulk');
    await page.click('#start');
    await page.waitForSelector('section[data-view="job"]:not([hidden])');

    const done = async () => Number(await page.getAttribute('#job-progress', 'value'));
    await expect.poll(done, { timeout: 60_000 }).toBeGreaterThanOrEqual(1);
    await page.click('[data-control="pause"]');
    await expect.poll(() => page.textContent('#job-counts'), { timeout: 30_000 }).toMatch(/^paused: .* 0 in flight/);
    const whilePaused = await done();
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(await done()).toBe(whilePaused);
    expect(whilePaused).toBeLessThan(4);

    await page.click('[data-control="resume"]');
    await expect.poll(done, { timeout: 90_000 }).toBe(4);
    await expect.poll(() => page.textContent('#job-counts')).toMatch(/^finished: 4 of 4 done \(4 completed, 0 failed/);
    await screenshot(page, 'bulk-job');
    const [report] = await Promise.all([page.waitForEvent('download'), page.click('#report-csv')]);
    expect(readFileSync((await report.path())!, 'utf8')).toContain(started[0]!.request.serialNumber);
    expect(problems).toEqual([]);
  }, 180_000);
});

describe('the fleet page', () => {
  async function provisioned(site: string, name: string) {
    const { request } = await devices.start({ site });
    const started = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [{ ...request, name }] } });
    expect(started.status).toBe(202);
    await service.env.client.workflow.getHandle(started.body.provisionings[0].provisioningId).result();
    return request.serialNumber;
  }

  async function signIn(page: Page, role: 'operator' | 'viewer') {
    await page.goto(`${api.baseUrl}/ui/fleet`);
    await page.fill('#api-key', await api.keyFor('acme', role));
    await page.click('#sign-in button[type=submit]');
    await page.waitForSelector('section[data-view="devices"]:not([hidden])');
  }

  const listed = (page: Page) => page.locator('#devices tr td:first-child').allTextContents();

  it('filters the devices by site and health, decommissions one from its page by keyboard after a confirmation with a reason, and replaces another with a new unit', async () => {
    const [gate, lobby] = [await provisioned('fleet-north', 'North gate camera'), await provisioned('fleet-north', 'North lobby camera')];
    const south = await provisioned('fleet-south', 'South door');
    // What the health sweeps would have recorded after the gate camera stopped answering.
    await service.parts.registry.recordHealth('acme', gate, { health: 'offline', healthCheckedAt: new Date(), consecutiveProbeFailures: 3, healthChangedAt: new Date() });
    await service.parts.registry.recordHealth('acme', lobby, { health: 'online', healthCheckedAt: new Date(), consecutiveProbeFailures: 0 });

    const { page, problems } = await openPage();
    await signIn(page, 'operator');
    await page.fill('#filter-site', 'fleet-north');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => listed(page)).toEqual([gate, lobby].sort());
    expect(await listed(page)).not.toContain(south);

    await page.selectOption('#filter-health', 'offline');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => listed(page)).toEqual([gate]);
    await page.selectOption('#filter-health', '');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => listed(page)).toEqual([gate, lobby].sort());
    await screenshot(page, 'fleet');
    await page.selectOption('#filter-health', 'offline');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => listed(page)).toEqual([gate]);
    // Health in words, not colour alone.
    expect(await page.textContent('#devices tr td:nth-child(6)')).toContain('offline');

    // A bad filter value comes back next to its field.
    await page.fill('#filter-expiring', 'soon');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => page.isVisible('[data-error-for="certificateExpiringWithinDays"]')).toBe(true);
    await page.fill('#filter-expiring', '');

    await page.click(`#devices button:text("${gate}")`);
    await page.waitForSelector('section[data-view="device"]:not([hidden])');
    expect(await page.textContent('#device-title')).toBe(`North gate camera (${gate})`);
    expect(await page.textContent('#device-facts')).toContain('offline');
    expect(await page.textContent('#device-runs')).toContain('completed');
    await screenshot(page, 'fleet-device');

    // Keyboard only: focus the action, Enter opens the confirmation; an empty reason is refused in place.
    await page.focus('[data-action="decommission"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#confirm[open]');
    expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('confirm-reason');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.isVisible('#confirm [data-error-for="reason"]')).toBe(true);
    expect((await service.parts.registry.get('acme', gate)).lifecycleState).toBe('active');
    await page.keyboard.type('camera removed, wall rebuilt');
    await page.keyboard.press('Enter');

    await expect.poll(() => page.textContent('#action-result'), { timeout: 60_000 }).toContain('now shows as decommissioned');
    const device = await service.parts.registry.get('acme', gate);
    expect(device).toMatchObject({ lifecycleState: 'decommissioned', decommissionReason: 'camera removed, wall rebuilt' });
    expect(await page.isVisible('#device-actions')).toBe(false);

    // The lobby camera is replaced by a new unit entered in the confirmation, a bad MAC named in place first.
    const { request: unit } = await devices.start({ site: 'fleet-north' });
    await page.click('#back');
    await page.selectOption('#filter-health', 'online');
    await page.click('#filters button[type=submit]');
    await expect.poll(() => listed(page)).toEqual([lobby]);
    await page.click(`#devices button:text("${lobby}")`);
    await page.waitForSelector('section[data-view="device"]:not([hidden])');
    await page.click('[data-action="replace"]');
    await page.waitForSelector('#confirm[open] #new-unit:not([hidden])');
    await page.fill('#new-serialNumber', unit.serialNumber);
    await page.fill('#new-macAddress', 'not-a-mac');
    await page.fill('#new-address', unit.address);
    await page.fill('#new-username', unit.credentials.username);
    await page.fill('#new-password', unit.credentials.password);
    await page.fill('#confirm-reason', 'RMA 7731: lens cracked');
    await page.click('#confirm-ok');
    await expect.poll(() => page.isVisible('#confirm [data-error-for="device.macAddress"]')).toBe(true);
    await page.fill('#new-macAddress', unit.macAddress);
    await page.click('#confirm-ok');
    await expect.poll(() => page.textContent('#action-result'), { timeout: 90_000 }).toContain(`now shows as decommissioned; replaced by ${unit.serialNumber}`);
    expect(await service.parts.registry.get('acme', unit.serialNumber)).toMatchObject({ lifecycleState: 'active', site: 'fleet-north', name: 'North lobby camera', replacementOf: lobby });
    expect(problems).toEqual([]);
  }, 180_000);

  it('shows a viewer the devices and a device, with no action to take', async () => {
    const deviceId = await provisioned('fleet-east', 'East camera');
    const { page, problems } = await openPage();
    await signIn(page, 'viewer');
    await page.goto(`${api.baseUrl}/ui/fleet#device=${deviceId}`);
    await page.reload();
    await page.waitForSelector('section[data-view="device"]:not([hidden])');
    expect(await page.textContent('#device-title')).toContain(deviceId);
    expect(await page.isVisible('#device-actions')).toBe(false);
    expect(await page.textContent('#no-actions')).toBe('Your role may not change devices.');
    expect(problems).toEqual([]);
  }, 90_000);
});

describe('the enrolment page', () => {
  it('on a phone: takes the token out of the address bar, starts provisioning for the address entered, and refuses the code a second time', async () => {
    const { request } = await devices.start();
    const registered = await api.call('POST', '/api/v1/provisioning/zero-touch', {
      body: { devices: [{ serialNumber: request.serialNumber, protocol: 'https', deviceType: 'camera', site: 'hq', credentials: request.credentials }] },
    });
    expect(registered.status).toBe(202);
    const issued = await api.call('POST', `/api/v1/provisioning/zero-touch/${request.serialNumber}/enrolment-token`);
    expect(issued.body.enrolUrl).toBe(`${api.baseUrl}/ui/enrol#token=${issued.body.token}`);

    const { page, problems } = await openPage({ mobile: true });
    await page.goto(issued.body.enrolUrl);
    await page.waitForSelector('#enrol:not([hidden])');
    expect(page.url()).toBe(`${api.baseUrl}/ui/enrol`);

    await page.click('#submit');
    expect(await page.textContent('#address-error')).toBe('Enter the address the device got on the network.');
    await page.fill('#address', request.address);
    await page.click('#submit');
    await expect.poll(() => page.textContent('#result')).toBe(`Provisioning of ${request.serialNumber} has started. You can close this page.`);

    await waitFor(async () => {
      const response = await api.call('GET', `/api/v1/provisioning/zero-touch/${request.serialNumber}`);
      return response.body.status?.state === 'provisioned' ? response.body : undefined;
    }, 'the device to be provisioned', 60_000);

    const second = await openPage({ mobile: true });
    await second.page.goto(issued.body.enrolUrl);
    await second.page.fill('#address', request.address);
    await second.page.click('#submit');
    await expect.poll(() => second.page.textContent('#result')).toBe('This code has already been used or has expired. Ask the operator for a new one.');
    expect([...problems, ...second.problems]).toEqual([]);
  }, 90_000);

  it('without a code tells the installer to scan one, and offers no form', async () => {
    const { page, problems } = await openPage({ mobile: true });
    await page.goto(`${api.baseUrl}/ui/enrol`);
    await page.waitForSelector('#no-token:not([hidden])');
    expect(await page.isVisible('#enrol')).toBe(false);
    expect(problems).toEqual([]);
  });
});

describe('the pages', () => {
  it('are served with a policy that allows scripts and styles from this origin only, and unknown assets are not found', async () => {
    for (const path of ['/ui/onboard', '/ui/enrol', '/ui/fleet', '/ui/bulk', '/ui/assets/onboard.js', '/ui/assets/fleet.js', '/ui/assets/bulk.js']) {
      const response = await fetch(`${api.baseUrl}${path}`);
      expect(response.status, path).toBe(200);
      expect(response.headers.get('content-security-policy'), path).toContain("script-src 'self'");
      expect(response.headers.get('content-security-policy'), path).toContain("frame-ancestors 'none'");
    }
    expect((await fetch(`${api.baseUrl}/ui/assets/onboard.js`)).headers.get('content-type')).toContain('text/javascript');
    expect((await fetch(`${api.baseUrl}/ui/assets/../../api/pages.ts`)).status).toBe(404);
    expect((await fetch(`${api.baseUrl}/ui/assets/secret.js`)).status).toBe(404);
  });
});
