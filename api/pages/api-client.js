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
