// Bulk provisioning: sign in, pick a template and a device list (CSV or .xlsx), have the service
// check it without starting anything (every refused row with its line, column and reason, sortable,
// and the file back with a column of reasons), start the job, then follow it live and steer it with
// the same controls the API and the CLI have. The key lives in this tab's session storage only.
import { ApiProblem, callApi, cell, clearFieldErrors, say, showFailure, showFieldErrors } from './api-client.js';

const base = '/api/v1/provisioning/bulk';
const keyStorage = 'provisioning-api-key';
const message = document.getElementById('message');
let key = sessionStorage.getItem(keyStorage) ?? '';
/** The refused rows of the last check, and how they are sorted. */
let problems = [];
let sortBy = { key: 'line', ascending: true };
let jobId;
let timer;

function show(view) {
  for (const section of document.querySelectorAll('section[data-view]')) section.hidden = section.dataset.view !== view;
  say(message, '');
}

const fail = (error, scope) => showFailure(message, error, scope);

/** A multipart upload, as the API takes device lists; the answer as callApi gives it. */
async function upload(dryRun) {
  const file = document.getElementById('file').files[0];
  const form = new FormData();
  form.set('templateId', document.getElementById('template').value);
  form.set('dryRun', String(dryRun));
  const concurrency = document.getElementById('concurrency').value.trim();
  if (concurrency) form.set('concurrency', concurrency);
  if (file) form.set('file', file, file.name);
  const response = await fetch(base, { method: 'POST', headers: { authorization: `Bearer ${key}`, accept: 'application/json' }, body: form });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiProblem(response.status, body);
  return body;
}

function renderProblems() {
  const { key: column, ascending } = sortBy;
  const sorted = [...problems].sort((a, b) => {
    const order = column === 'line' ? a.line - b.line : String(a[column]).localeCompare(String(b[column]));
    return (ascending ? order : -order) || a.line - b.line;
  });
  document.getElementById('problems').replaceChildren(
    ...sorted.map((problem) => {
      const row = document.createElement('tr');
      row.append(cell(String(problem.line)), cell(problem.column), cell(problem.reason));
      return row;
    }),
  );
  for (const header of document.querySelectorAll('#problems-view th')) {
    const button = header.querySelector('[data-sort]');
    header.setAttribute('aria-sort', button.dataset.sort === column ? (ascending ? 'ascending' : 'descending') : 'none');
  }
  document.getElementById('problems-view').hidden = problems.length === 0;
}

async function check(event) {
  event.preventDefault();
  const form = document.getElementById('upload');
  clearFieldErrors(form);
  problems = [];
  renderProblems();
  document.getElementById('start').disabled = true;
  say(document.getElementById('plan'), '');
  try {
    const { plan } = await upload(true);
    const sites = Object.entries(plan.bySite).map(([site, count]) => `${count} at ${site}`).join(', ');
    say(document.getElementById('plan'), `Ready: ${plan.total} devices with template ${plan.templateId} (${sites}). Nothing has started yet.`, 'success');
    document.getElementById('start').disabled = false;
    document.getElementById('start').focus();
  } catch (error) {
    if (error instanceof ApiProblem) {
      problems = error.fields.filter((field) => typeof field.line === 'number');
      const others = error.fields.filter((field) => typeof field.line !== 'number');
      renderProblems();
      const unplaced = showFieldErrors(others, form);
      const count = problems.length;
      say(message, [count > 0 ? `${count} problem${count === 1 ? '' : 's'} in the file; fix them and check again.` : error.message, ...unplaced].join(' — '), 'error');
    } else fail(error, form);
  }
}

async function start() {
  try {
    const body = await upload(false);
    await openJob(body.jobId);
  } catch (error) {
    fail(error, document.getElementById('upload'));
  }
}

/** RFC 4180 records of a CSV text, each a list of fields. */
function parseCsv(text) {
  const records = [];
  let record = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') record.push(field), (field = '');
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field), records.push(record), (record = []), (field = '');
    } else field += c;
  }
  if (field !== '' || record.length > 0) record.push(field), records.push(record);
  return records;
}

function csvField(value) {
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",;\t\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * The device list with a last column of reasons: a CSV file is annotated here, as uploaded; a
 * workbook by the service, which gives it back as a workbook (without passwords).
 */
async function downloadWithReasons() {
  const file = document.getElementById('file').files[0];
  if (file && !/\.csv$/i.test(file.name)) {
    const form = new FormData();
    form.set('templateId', document.getElementById('template').value);
    form.set('file', file, file.name);
    const response = await fetch(`${base}/annotated`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    if (!response.ok) return fail(new ApiProblem(response.status, await response.json().catch(() => ({}))));
    const name = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '')?.[1] ?? 'devices-with-reasons.xlsx';
    return save(await response.blob(), name);
  }
  const byLine = new Map();
  for (const problem of problems) byLine.set(problem.line, [...(byLine.get(problem.line) ?? []), `${problem.column}: ${problem.reason}`]);
  const records = parseCsv((await file.text()).replace(/^\uFEFF/, ''));
  const lines = records.map((record, index) => [...record, index === 0 ? 'problems' : (byLine.get(index + 1) ?? []).join('; ')]);
  const name = file.name.replace(/\.csv$/i, '') + '-with-reasons.csv';
  const text = '\uFEFF' + lines.map((record) => record.map(csvField).join(',')).join('\r\n') + '\r\n';
  save(new Blob([text], { type: 'text/csv' }), name);
}

function save(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function listJobs() {
  const { body } = await callApi('GET', base, { key });
  document.getElementById('jobs').replaceChildren(
    ...body.jobs.map((job) => {
      const row = document.createElement('tr');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link';
      open.textContent = job.jobId.slice(0, 8);
      open.setAttribute('aria-label', `Open job ${job.jobId}`);
      open.addEventListener('click', () => openJob(job.jobId));
      const first = document.createElement('td');
      first.append(open);
      row.append(first, cell(job.fileName), cell(String(job.rowCount)), cell(job.finishedAt ? 'finished' : 'running'), cell(new Date(job.createdAt).toLocaleString()));
      return row;
    }),
  );
}

function duration(seconds) {
  if (seconds === undefined) return 'unknown';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.round(seconds / 60)} min`;
}

async function refreshJob() {
  const { body: job } = await callApi('GET', `${base}/${jobId}`, { key });
  const p = job.progress;
  const done = p.completed + p.failed + p.cancelled;
  document.getElementById('job-title').textContent = `Job ${job.jobId}: ${job.fileName}, template ${job.templateId}`;
  const bar = document.getElementById('job-progress');
  bar.max = Math.max(1, p.total);
  bar.value = done;
  bar.setAttribute('aria-valuetext', `${done} of ${p.total} devices done`);
  document.getElementById('job-counts').textContent =
    `${p.state}: ${done} of ${p.total} done (${p.completed} completed, ${p.failed} failed, ${p.cancelled} cancelled), ${p.inProgress} in flight, ${p.pending} waiting; ` +
    `${p.ratePerSecond.toFixed(2)} devices/s, time left ${p.state === 'finished' ? 'none' : duration(p.estimatedSecondsRemaining)}.`;
  const steps = Object.entries(p.stepFailures);
  document.getElementById('job-steps').replaceChildren(
    ...(steps.length === 0 ? [['none', 0]] : steps).map(([step, count]) => Object.assign(document.createElement('li'), { textContent: step === 'none' ? 'None.' : `${step}: ${count}` })),
  );
  const controls = { pause: p.state === 'running', resume: p.state === 'paused', cancel: p.state === 'running' || p.state === 'paused', 'retry-failed': p.state === 'finished' && p.failed > 0 };
  for (const button of document.querySelectorAll('[data-control]')) button.disabled = !controls[button.dataset.control];
  const concurrency = document.getElementById('job-concurrency');
  if (document.activeElement !== concurrency) concurrency.value = String(p.concurrency);
  clearTimeout(timer);
  if (p.state !== 'finished') timer = setTimeout(() => refreshJob().catch((error) => fail(error)), 1000);
}

async function openJob(id) {
  jobId = id;
  show('job');
  location.hash = `job=${id}`;
  await refreshJob();
  document.getElementById('back').focus();
}

async function control(name, reason) {
  if (name === 'cancel' && reason === undefined) {
    const dialog = document.getElementById('cancel-dialog');
    clearFieldErrors(dialog);
    document.getElementById('cancel-reason').value = '';
    dialog.showModal();
    document.getElementById('cancel-reason').focus();
    return;
  }
  try {
    await callApi('POST', `${base}/${jobId}/${name}`, { key, body: reason ? { reason } : {} });
    await refreshJob();
  } catch (error) {
    fail(error);
  }
}

async function download(format) {
  const response = await fetch(`${base}/${jobId}/report?format=${format}`, { headers: { authorization: `Bearer ${key}` } });
  if (!response.ok) return fail(new ApiProblem(response.status, await response.json().catch(() => ({}))));
  save(await response.blob(), `bulk-${jobId}.${format}`);
}

async function signIn(candidate) {
  const { body } = await callApi('GET', '/api/v1/access/me', { key: candidate });
  key = candidate;
  sessionStorage.setItem(keyStorage, key);
  document.getElementById('signed-in').textContent = `Signed in as ${body.name} (${body.role}) for tenant ${body.tenantId}.`;
  const templates = (await callApi('GET', '/api/v1/provisioning/templates', { key })).body.templates;
  document.getElementById('template').replaceChildren(...templates.map((template) => new Option(`${template.name} (${template.id}, ${template.protocol})`, template.id)));
}

async function begin() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get('job')) return openJob(hash.get('job'));
  show('upload');
  await listJobs();
}

document.getElementById('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  clearFieldErrors();
  try {
    await signIn(document.getElementById('api-key').value.trim());
    await begin();
  } catch (error) {
    if (error instanceof ApiProblem && error.status === 401) {
      showFieldErrors([{ field: 'api-key', reason: 'This key is not valid.' }]);
      document.getElementById('api-key').focus();
    } else fail(error);
  }
});
document.getElementById('upload').addEventListener('submit', check);
document.getElementById('file').addEventListener('change', () => (document.getElementById('start').disabled = true));
document.getElementById('start').addEventListener('click', start);
document.getElementById('download-reasons').addEventListener('click', downloadWithReasons);
for (const button of document.querySelectorAll('[data-sort]')) {
  button.addEventListener('click', () => {
    sortBy = { key: button.dataset.sort, ascending: sortBy.key === button.dataset.sort ? !sortBy.ascending : true };
    renderProblems();
  });
}
for (const button of document.querySelectorAll('[data-control]')) button.addEventListener('click', () => control(button.dataset.control));
document.getElementById('concurrency-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearFieldErrors(form);
  try {
    await callApi('PUT', `${base}/${jobId}/concurrency`, { key, body: { concurrency: Number(document.getElementById('job-concurrency').value) } });
    await refreshJob();
  } catch (error) {
    fail(error, form);
  }
});
document.getElementById('cancel-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const dialog = document.getElementById('cancel-dialog');
  const reason = document.getElementById('cancel-reason').value.trim();
  if (!reason) {
    showFieldErrors([{ field: 'reason', reason: 'Say why: the reason goes into the audit trail.' }], dialog);
    return;
  }
  dialog.close();
  control('cancel', reason);
});
document.getElementById('cancel-keep').addEventListener('click', () => document.getElementById('cancel-dialog').close());
document.getElementById('report-csv').addEventListener('click', () => download('csv'));
document.getElementById('report-json').addEventListener('click', () => download('json'));
document.getElementById('back').addEventListener('click', async () => {
  clearTimeout(timer);
  history.replaceState(null, '', location.pathname);
  show('upload');
  await listJobs();
});

if (key) {
  signIn(key)
    .then(begin)
    .catch(() => show('sign-in'));
}
