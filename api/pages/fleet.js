// The fleet at a glance: sign in with an API key, filter the tenant's devices (site, state, health,
// firmware verdict, certificate expiry, free text), open one to see it whole with its runs and open
// alerts, and act on it (rotate credentials, re-provision, decommission) after confirming with a
// reason. The key lives in this tab's session storage only; every call goes to this service's API.
import { ApiProblem, callApi, cell, clearFieldErrors, say, showFailure, showFieldErrors } from './api-client.js';

const keyStorage = 'provisioning-api-key';
const message = document.getElementById('message');
const pageSize = 50;
/** Roles whose permissions cover the lifecycle actions (`devices:lifecycle`, `provisioning:write`). */
const rolesThatAct = new Set(['operator', 'administrator']);
let key = sessionStorage.getItem(keyStorage) ?? '';
let role = '';
let next;
let current;

const labels = {
  state: { registered: 'registered', provisioning: 'provisioning', provisioned: 'provisioned', active: 'active', failed: 'failed', decommissioned: 'decommissioned' },
  // Words and a symbol, never colour alone.
  health: { online: '● online', offline: '○ offline', unknown: '– not yet probed' },
  firmware: { approved: '✓ approved', unknown: '? not in the catalogue', known_bad: '✗ known bad', unchecked: '– not judged' },
};

const actions = {
  'rotate-credentials': {
    title: 'Rotate credentials',
    text: (id) => `The management secrets the service holds for ${id} are replaced on the device, each proven by a fresh login.`,
    path: (id) => `/api/v1/devices/${encodeURIComponent(id)}/rotate-credentials`,
  },
  reprovision: {
    title: 'Re-provision',
    text: (id) => `${id} makes a new key and gets a new certificate; the old certificate is revoked once the new one is in use.`,
    path: (id) => `/api/v1/devices/${encodeURIComponent(id)}/reprovision`,
  },
  replace: {
    title: 'Replace',
    text: (id) => `A new unit is provisioned in place of ${id}; once it is active, ${id} is decommissioned.`,
    path: (id) => `/api/v1/devices/${encodeURIComponent(id)}/replace`,
    body: () => {
      const device = {};
      for (const input of document.querySelectorAll('#new-unit [data-field]')) {
        const value = input.value.trim();
        if (value) device[input.dataset.field] = value;
      }
      const username = document.getElementById('new-username').value;
      const password = document.getElementById('new-password').value;
      if (username || password) device.credentials = { username, password };
      return { device };
    },
    done: (device) => Boolean(device.lifecycle.replacedBy) && device.state === 'decommissioned',
  },
  decommission: {
    title: 'Decommission',
    text: (id) => `${id} loses every certificate and secret, our access on it is removed where its protocol allows, and it can never be provisioned again. This cannot be undone.`,
    path: (id) => `/api/v1/devices/${encodeURIComponent(id)}/decommission`,
  },
};

function show(view) {
  for (const section of document.querySelectorAll('section[data-view]')) section.hidden = section.dataset.view !== view;
  say(message, '');
}

const fail = (error, scope) => showFailure(message, error, scope);

function date(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

function filterQuery() {
  const params = new URLSearchParams();
  for (const input of document.querySelectorAll('#filters [name]')) {
    const value = input.value.trim();
    if (value) params.set(input.name, value);
  }
  return params;
}

async function listDevices(append) {
  clearFieldErrors(document.getElementById('filters'));
  const params = filterQuery();
  params.set('limit', String(pageSize));
  if (append && next) params.set('cursor', next);
  try {
    const { body } = await callApi('GET', `/api/v1/devices?${params}`, { key });
    const rows = body.devices.map((device) => {
      const row = document.createElement('tr');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link';
      open.textContent = device.deviceId;
      open.addEventListener('click', () => openDevice(device.deviceId));
      const first = document.createElement('td');
      first.append(open);
      row.append(
        first,
        cell(device.name),
        cell(device.site),
        cell(device.protocol),
        cell(labels.state[device.state] ?? device.state),
        cell(labels.health[device.health] ?? device.health),
        cell(labels.firmware[device.firmwareStatus] ?? device.firmwareStatus),
        cell(date(device.certificateExpiresAt)),
      );
      row.dataset.deviceId = device.deviceId;
      return row;
    });
    const table = document.getElementById('devices');
    if (append) table.append(...rows);
    else table.replaceChildren(...rows);
    next = body.next;
    document.getElementById('more').hidden = !next;
    const shown = table.children.length;
    say(document.getElementById('summary'), shown === 0 ? 'No device matches these filters.' : `${shown} device${shown === 1 ? '' : 's'} shown${next ? '; more match' : ''}.`);
  } catch (error) {
    fail(error, document.getElementById('filters'));
  }
}

function fact(list, term, value) {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value ?? '—';
  list.append(dt, dd);
}

async function openDevice(deviceId) {
  try {
    const [{ body: device }, { body: runs }] = await Promise.all([
      callApi('GET', `/api/v1/devices/${encodeURIComponent(deviceId)}`, { key }),
      callApi('GET', `/api/v1/devices/${encodeURIComponent(deviceId)}/runs?limit=20`, { key }),
    ]);
    current = device;
    show('device');
    location.hash = `device=${encodeURIComponent(deviceId)}`;
    document.getElementById('device-title').textContent = `${device.name ?? device.deviceId} (${device.deviceId})`;
    const facts = document.getElementById('device-facts');
    facts.replaceChildren();
    fact(facts, 'State', labels.state[device.state] ?? device.state);
    fact(facts, 'Health', `${labels.health[device.health] ?? device.health}${device.healthDetail.checkedAt ? `, last probed ${date(device.healthDetail.checkedAt)}` : ''}`);
    const verdict = device.firmware.verdict ?? {};
    const basis = verdict.basis === 'digest' ? ', judged by its image digest' : verdict.basis === 'version' ? ', judged by version only' : '';
    const why = device.firmwareStatus === 'known_bad' && verdict.reason ? ` (${verdict.reason})` : '';
    fact(facts, 'Firmware', `${device.firmwareVersion ?? 'unknown version'}: ${labels.firmware[device.firmwareStatus] ?? device.firmwareStatus}${basis}${why}`);
    fact(facts, 'Vendor and model', [device.vendor, device.model].filter(Boolean).join(' '));
    fact(facts, 'Serial number', device.serialNumber);
    fact(facts, 'MAC address', device.macAddress);
    fact(facts, 'Address', device.address);
    fact(facts, 'Site', device.site);
    fact(facts, 'Protocol', device.protocol);
    fact(facts, 'Certificate', device.certificate ? `serial ${device.certificate.serialNumber}, expires ${date(device.certificate.expiresAt)}${device.certificate.revokedAt ? `, revoked ${date(device.certificate.revokedAt)}` : ''}` : 'none');
    fact(facts, 'Configuration', device.configuration.templateId ? `${device.configuration.templateId} version ${device.configuration.version}, ${device.configuration.drift === 'drifted' ? 'drifted from it' : device.configuration.drift}` : 'none of ours');
    if (device.lifecycle.decommissionReason) fact(facts, 'Decommissioned', `${date(device.decommissionedAt)}: ${device.lifecycle.decommissionReason}`);

    const alerts = document.getElementById('device-alerts');
    alerts.replaceChildren(
      ...(device.openAlerts.length === 0
        ? [Object.assign(document.createElement('li'), { textContent: 'None.' })]
        : device.openAlerts.map((alert) => Object.assign(document.createElement('li'), { textContent: `${alert.severity}: ${alert.summary}` }))),
    );
    document.getElementById('device-runs').replaceChildren(
      ...runs.runs.map((run) => {
        const row = document.createElement('tr');
        row.append(cell(date(run.finishedAt)), cell(run.provisioningMethod), cell(run.outcome), cell(run.certificateSerial), cell(run.workflowId));
        return row;
      }),
    );
    const mayAct = rolesThatAct.has(role) && device.state !== 'decommissioned';
    document.getElementById('device-actions').hidden = !mayAct;
    document.getElementById('no-actions').hidden = mayAct;
    if (!rolesThatAct.has(role)) document.getElementById('no-actions').textContent = 'Your role may not change devices.';
    else document.getElementById('no-actions').textContent = 'A decommissioned device takes no further action.';
    document.getElementById('back').focus();
  } catch (error) {
    fail(error);
  }
}

let pendingAction;

function confirmAction(name) {
  const action = actions[name];
  pendingAction = name;
  const dialog = document.getElementById('confirm');
  clearFieldErrors(dialog);
  document.getElementById('confirm-title').textContent = `${action.title} ${current.deviceId}?`;
  document.getElementById('confirm-text').textContent = action.text(current.deviceId);
  document.getElementById('confirm-ok').textContent = action.title;
  document.getElementById('confirm-reason').value = '';
  const newUnit = document.getElementById('new-unit');
  newUnit.hidden = name !== 'replace';
  for (const input of newUnit.querySelectorAll('input')) input.value = '';
  dialog.showModal();
  (name === 'replace' ? document.getElementById('new-serialNumber') : document.getElementById('confirm-reason')).focus();
}

async function performAction(event) {
  event.preventDefault();
  const dialog = document.getElementById('confirm');
  clearFieldErrors(dialog);
  const reason = document.getElementById('confirm-reason').value.trim();
  if (!reason) {
    showFieldErrors([{ field: 'reason', reason: 'Say why: the reason goes into the audit trail.' }], dialog);
    document.getElementById('confirm-reason').focus();
    return;
  }
  const action = actions[pendingAction];
  try {
    const { body } = await callApi('POST', action.path(current.deviceId), { key, body: { reason, ...(action.body ? action.body() : {}) } });
    dialog.close();
    say(document.getElementById('action-result'), `${action.title} started (job ${body.jobId ?? body.rotationId ?? body.workflowId ?? ''}).`, 'success');
    await followJob(pendingAction);
  } catch (error) {
    const unplaced = error instanceof ApiProblem ? showFieldErrors(error.fields, dialog) : [];
    if (unplaced.length > 0 || !(error instanceof ApiProblem) || error.fields.length === 0) {
      dialog.close();
      fail(error);
    }
  }
}

/** Re-reads the device until the action shows in its state, for at most two minutes. */
async function followJob(name) {
  const deviceId = current.deviceId;
  const done = actions[name].done ?? ((device) => (name === 'decommission' ? device.state === 'decommissioned' : true));
  for (let i = 0; i < 120; i++) {
    const { body } = await callApi('GET', `/api/v1/devices/${encodeURIComponent(deviceId)}`, { key });
    if (done(body)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await openDevice(deviceId);
  const replaced = current.lifecycle.replacedBy ? `; replaced by ${current.lifecycle.replacedBy}` : '';
  say(document.getElementById('action-result'), `${actions[name].title}: requested; the device now shows as ${current.state}${replaced}.`, 'success');
}

async function signIn(candidate) {
  const { body } = await callApi('GET', '/api/v1/access/me', { key: candidate });
  key = candidate;
  role = body.role;
  sessionStorage.setItem(keyStorage, key);
  document.getElementById('signed-in').textContent = `Signed in as ${body.name} (${body.role}) for tenant ${body.tenantId}.`;
}

async function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  show('devices');
  await listDevices(false);
  if (hash.get('device')) await openDevice(hash.get('device'));
}

document.getElementById('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors();
  const candidate = document.getElementById('api-key').value.trim();
  try {
    await signIn(candidate);
    await start();
  } catch (error) {
    if (error instanceof ApiProblem && error.status === 401) {
      showFieldErrors([{ field: 'api-key', reason: 'This key is not valid.' }]);
      document.getElementById('api-key').focus();
    } else fail(error);
  }
});

document.getElementById('filters').addEventListener('submit', (event) => {
  event.preventDefault();
  listDevices(false);
});
document.getElementById('clear-filters').addEventListener('click', () => {
  for (const input of document.querySelectorAll('#filters [name]')) input.value = '';
  listDevices(false);
});
document.getElementById('more').addEventListener('click', () => listDevices(true));
document.getElementById('back').addEventListener('click', async () => {
  history.replaceState(null, '', location.pathname);
  show('devices');
  await listDevices(false);
  document.querySelector(`#devices tr[data-device-id="${CSS.escape(current.deviceId)}"] button`)?.focus();
});
for (const button of document.querySelectorAll('#device-actions [data-action]')) {
  button.addEventListener('click', () => confirmAction(button.dataset.action));
}
document.getElementById('confirm-form').addEventListener('submit', performAction);
document.getElementById('confirm-cancel').addEventListener('click', () => document.getElementById('confirm').close());

if (key) {
  signIn(key)
    .then(start)
    .catch(() => show('sign-in'));
}
