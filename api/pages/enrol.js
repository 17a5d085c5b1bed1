// The enrolment page an installer's phone opens from a QR code: the single-use token is in the URL
// fragment (never sent to a server by the browser); the installer adds the device's address and
// the service starts provisioning it.
import { ApiProblem, callApi, say } from './api-client.js';

const form = document.getElementById('enrol');
const address = document.getElementById('address');
const addressError = document.getElementById('address-error');
const submit = document.getElementById('submit');
const result = document.getElementById('result');

const token = new URLSearchParams(location.hash.slice(1)).get('token');
// Out of the address bar and the history, so the code does not linger on the phone.
if (location.hash) history.replaceState(null, '', location.pathname);

if (!token) {
  document.getElementById('no-token').hidden = false;
} else {
  form.hidden = false;
  address.focus();
}

function showFieldError(message) {
  addressError.textContent = message;
  addressError.hidden = !message;
  address.setAttribute('aria-invalid', message ? 'true' : 'false');
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  showFieldError('');
  const value = address.value.trim();
  if (!value) {
    showFieldError('Enter the address the device got on the network.');
    return;
  }
  submit.disabled = true;
  say(result, 'Sending…');
  try {
    const { body } = await callApi('POST', '/api/v1/provisioning/zero-touch/enrol', { body: { token, address: value } });
    form.hidden = true;
    say(result, `Provisioning of ${body.deviceId} has started. You can close this page.`, 'success');
  } catch (error) {
    submit.disabled = false;
    if (error instanceof ApiProblem && error.status === 401) {
      form.hidden = true;
      say(result, 'This code has already been used or has expired. Ask the operator for a new one.', 'error');
      return;
    }
    const field = error instanceof ApiProblem ? error.fields.find((f) => f.field === 'address') : undefined;
    if (field) showFieldError(`The address ${field.reason}.`);
    say(result, field ? '' : error.message, 'error');
  }
});
