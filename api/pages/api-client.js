// Calls this service's API from the pages and turns a problem+json answer into an Error that
// carries its status, detail and per-field reasons, so each page can put a reason next to its field.

export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `request failed (${status})`);
    this.status = status;
    this.fields = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

export async function callApi(method, path, { key, body } = {}) {
  const headers = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiProblem(0, { detail: 'the service cannot be reached; check the connection and try again' });
  }
  const text = await response.text();
  let parsed = {};
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { detail: text };
  }
  if (!response.ok) throw new ApiProblem(response.status, parsed);
  return { status: response.status, body: parsed };
}

/** Shows a message in an element with role=status or role=alert. */
export function say(element, message, kind = 'info') {
  element.textContent = message;
  element.dataset.kind = kind;
  element.hidden = !message;
}

/** Hides every field reason shown within `scope` and clears the fields' invalid marks. */
export function clearFieldErrors(scope = document) {
  for (const element of scope.querySelectorAll('[data-error-for]')) element.hidden = true;
  for (const input of scope.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/**
 * Puts each reason the service gave next to its field within `scope` (`query:site` and `body.reason`
 * go to the elements marked `data-error-for="site"` and `"reason"`); returns those with no place.
 */
export function showFieldErrors(fields, scope = document) {
  const unplaced = [];
  for (const { field, reason } of fields) {
    const target = scope.querySelector(`[data-error-for="${CSS.escape(field.replace(/^(query|body)[.:]/, ''))}"]`);
    if (!target) {
      unplaced.push(`${field}: ${reason}`);
      continue;
    }
    target.textContent = reason;
    target.hidden = false;
    target.parentElement.querySelector('input, select')?.setAttribute('aria-invalid', 'true');
  }
  return unplaced;
}

/** A table cell holding `text` as text. */
export function cell(text) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  return td;
}

/** Says in `element` what went wrong, each field's reason next to its field within `scope`. */
export function showFailure(element, error, scope) {
  const unplaced = error instanceof ApiProblem ? showFieldErrors(error.fields, scope) : [];
  say(element, [error.message, ...unplaced].join(' — '), 'error');
}
