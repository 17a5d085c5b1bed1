// The onboarding wizard: sign in with an API key, describe the device, check it against a template
// (the service validates it without starting anything), then start the run and follow its steps.
// The key lives in this tab's session storage only; every call goes to this service.
import { ApiProblem, callApi, say } from './api-client.js';

const provisioningPath = '/api/v1/provisioning/devices';
const deviceFields = ['serialNumber', 'macAddress', 'address', 'protocol', 'deviceType', 'site', 'name'];
const keyStorage = 'provisioning-api-key';
const message = document.getElementById('message');
let key = sessionStorage.getItem(keyStorage) ?? '';
/** The tenant's templates, read at sign-in. */
let templates = [];
let following;

function show(step) {
  for (const section of document.querySelectorAll('section[data-step]')) section.hidden = section.dataset.step !== step;
  for (const item of document.querySelectorAll('ol.steps li')) {
    if (item.dataset.step === step) item.setAttribute('aria-current', 'step');
    else item.removeAttribute('aria-current');
  }
  say(message, '');
  document.querySelector(`section[data-step="${step}"] input, section[data-step="${step}"] select`)?.focus();
}

function clearFieldErrors() {
  for (const element of document.querySelectorAll('[data-error-for]')) element.hidden = true;
  for (const input of document.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/** Puts each reason the service gave next to its field (`devices[0].macAddress` goes to the MAC input). */
function showFieldErrors(fields) {
  const unplaced = [];
  for (const { field, reason } of fields) {
    const name = field.replace(/^body[.:]/, '').replace(/^devices\[\d+\]\./, '');
    const target = document.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (!target) {
      unplaced.push(`${field}: ${reason}`);
      continue;
    }
    target.textContent = reason;
    target.hidden = false;
    const input = target.parentElement.querySelector('input, select');
    input?.setAttribute('aria-invalid', 'true');
  }
  return unplaced;
}

function fail(error) {
  const unplaced = error instanceof ApiProblem ? showFieldErrors(error.fields) : [];
  say(message, [error.message, ...unplaced].join(' — '), 'error');
}

function deviceRequest() {
  const device = {};
  for (const name of deviceFields) {
    const value = document.getElementById(name).value.trim();
    if (value) device[name] = value;
  }
  const username = document.getElementById('username').value;
  const password = document.getElementById('password').value;
  if (username || password) device.credentials = { username, password };
  return device;
}

function requestBody(validateOnly) {
  const templateId = document.getElementById('template').value;
  return { devices: [deviceRequest()], ...(templateId ? { templateId } : {}), options: { validateOnly } };
}

async function signIn(candidate) {
  const { body } = await callApi('GET', '/api/v1/access/me', { key: candidate });
  key = candidate;
  sessionStorage.setItem(keyStorage, key);
  document.getElementById('signed-in').textContent = `Signed in as ${body.name} (${body.role}) for tenant ${body.tenantId}.`;
  // A device is onboarded with a template for its protocol: the templates say which protocols can be.
  templates = (await callApi('GET', '/api/v1/provisioning/templates', { key })).body.templates;
  const protocols = [...new Set(templates.map((template) => template.protocol))].sort();
  document.getElementById('protocol').replaceChildren(...protocols.map((protocol) => new Option(protocol, protocol)));
}

function showTemplates() {
  const protocol = document.getElementById('protocol').value;
  const suitable = templates.filter((template) => template.protocol === protocol);
  const select = document.getElementById('template');
  select.replaceChildren(...suitable.map((template) => new Option(`${template.name} (${template.id}, v${template.version})`, template.id)));
}

document.getElementById('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors();
  const candidate = document.getElementById('api-key').value.trim();
  if (!candidate) return void showFieldErrors([{ field: 'api-key', reason: 'Enter an API key.' }]);
  try {
    await signIn(candidate);
    show('device');
  } catch (error) {
    if (error instanceof ApiProblem && error.status === 401) return void showFieldErrors([{ field: 'api-key', reason: 'This key is not valid.' }]);
    fail(error);
  }
});

document.getElementById('device').addEventListener('submit', (event) => {
  event.preventDefault();
  clearFieldErrors();
  const missing = ['serialNumber', 'macAddress', 'address', 'site'].filter((name) => !document.getElementById(name).value.trim());
  if (missing.length > 0) return void showFieldErrors(missing.map((field) => ({ field, reason: 'Required.' })));
  showTemplates();
  document.getElementById('start').disabled = true;
  say(document.getElementById('plan'), '');
  show('configuration');
});

document.getElementById('configuration').addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors();
  const plan = document.getElementById('plan');
  try {
    const { body } = await callApi('POST', provisioningPath, { key, body: requestBody(true) });
    say(plan, `Ready: ${body.devices[0].deviceId} with template ${body.templateId}. Nothing has been started yet.`, 'success');
    document.getElementById('start').disabled = false;
  } catch (error) {
    say(plan, '');
    document.getElementById('start').disabled = true;
    // Device fields are on the previous step: go back to them when that is where the problem is.
    if (error instanceof ApiProblem && error.fields.some((f) => /^devices\[\d+\]\./.test(f.field))) show('device');
    fail(error);
  }
});

document.getElementById('start').addEventListener('click', async () => {
  try {
    const { body } = await callApi('POST', provisioningPath, { key, body: requestBody(false) });
    const [run] = body.provisionings;
    show('provision');
    follow(run.provisioningId, run.statusUrl);
  } catch (error) {
    fail(error);
  }
});

function follow(provisioningId, statusUrl) {
  const run = document.getElementById('run');
  const steps = document.getElementById('steps');
  say(run, `Provisioning ${provisioningId}…`);
  clearInterval(following);
  const poll = async () => {
    try {
      const { body: record } = await callApi('GET', statusUrl, { key });
      steps.replaceChildren(
        ...record.provisioningSteps.map((step) => {
          const row = document.createElement('tr');
          row.dataset.step = step.step;
          for (const text of [step.step, step.status, String(step.retryCount + (step.status === 'pending' ? 0 : 1)), step.error ?? '']) {
            const cell = document.createElement('td');
            cell.textContent = text;
            row.append(cell);
          }
          return row;
        }),
      );
      if (record.status === 'completed') {
        const serial = record.certificateInfo?.serialNumber;
        say(run, `Completed: ${record.deviceId} is active${serial ? ` with certificate ${serial}` : ''}.`, 'success');
      } else if (record.status === 'failed') {
        say(run, `Failed${record.error?.step ? ` at ${record.error.step}` : ''}: ${record.error?.message ?? 'see the steps below'}.`, 'error');
      } else {
        return;
      }
      clearInterval(following);
      document.getElementById('again').hidden = false;
    } catch (error) {
      fail(error);
    }
  };
  following = setInterval(poll, 1000);
  void poll();
}

for (const back of document.querySelectorAll('[data-back]')) {
  back.addEventListener('click', () => show(back.closest('section').dataset.step === 'configuration' ? 'device' : 'sign-in'));
}

document.getElementById('again').addEventListener('click', () => {
  document.getElementById('device').reset();
  document.getElementById('again').hidden = true;
  show('device');
});

if (key) {
  signIn(key).then(() => show('device'), () => show('sign-in'));
} else {
  show('sign-in');
}
