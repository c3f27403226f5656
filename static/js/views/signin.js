// views/signin.js — owns the sign-in form: checks an API token with GET /app?limit=1 before keeping it.

import { api } from '../api.js';
import { h, busy, field, errorBox } from '../ui.js';

export function signInView({ message, onSignedIn }) {
  const err = errorBox();
  if (message) err.show(message);
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const form = h('form', { class: 'signin-form', novalidate: true },
    field('API token', input, 'The admin token Herald printed at first start, or HERALD_ADMIN_TOKEN.'),
    err.el, submit);

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    err.clear();
    if (!t) {
      err.show('Enter your API token.');
      input.focus();
      return;
    }
    busy(submit, async () => {
      try {
        await api.get('/app', { limit: 1 }, { token: t, quiet401: true });
        onSignedIn(t);
      } catch (e2) {
        err.show(e2.status === 401 ? 'Invalid token' : e2);
        input.select();
      }
    });
  });

  queueMicrotask(() => input.focus());
  return h('section', { class: 'signin' },
    h('div', { class: 'card signin-card' },
      h('h1', { tabindex: '-1' }, 'Sign in to Herald'),
      h('p', { class: 'muted' }, 'Your token stays in this browser tab only (session storage).'),
      form));
}
