// Places orders and follows recent sagas by polling GET /orders. Plain ES2020, no build
// step; every piece of server data goes into the DOM through textContent, never as HTML.
'use strict';
(() => {
  const POLL_MS = 1000;
  const LIMIT = 20;
  const STAGE_NAMES = {
    received: 'received',
    order_created: 'order created',
    stock_reserved: 'stock reserved',
    completed: 'completed',
    failed: 'failed',
    compensated: 'compensated',
  };
  const $ = (id) => document.getElementById(id);
  const form = $('order-form');
  const formStatus = $('form-status');
  const list = $('orders');
  const empty = $('empty');
  const connection = $('connection');
  const announcer = $('announcer');
  // uuid -> {li, key, status}: cards are updated in place, so nothing flickers or loses
  // its place while a saga moves on.
  const cards = new Map();
  // Orders placed from this page that the status view does not list yet: it is fed by
  // Pub/Sub, so a saga appears there a moment after it was accepted.
  const placed = new Map();
  let latest = [];
  let rendered = false;
  let busy = false;

  const el = (tag, className, text) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const short = (uuid) => String(uuid).slice(0, 8);
  const summary = (o) => `${o.quantity} × ${o.item} for ${o.user}`;
  const clock = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  // The first stage gets its clock time, later ones how long after it they came: the
  // saga's pace at a glance, in little room.
  const when = (at, start) => {
    const d = new Date(at);
    if (Number.isNaN(d.getTime())) return '';
    if (!start) return clock(d);
    const s = (d - start) / 1000;
    return `${s < 0 ? '−' : '+'}${Math.abs(s).toFixed(1)} s`;
  };

  function outcome(o) {
    switch (o.status) {
      case 'completed':
        return { kind: 'success', icon: '✓', label: 'Completed' };
      case 'compensated':
        return { kind: 'failure', icon: '✗', label: 'Failed · compensated' };
      case 'failed':
        return { kind: 'failure', icon: '✗', label: 'Failed · compensating…' };
      default:
        return { kind: 'pending', icon: '↻', label: `In progress: ${STAGE_NAMES[o.status] || o.status}` };
    }
  }

  function details(o) {
    const lines = [];
    if (o.status === 'completed') {
      lines.push(o.total_invoice == null ? 'Paid.' : `Paid: invoice total ${o.total_invoice}.`);
    } else if (o.status === 'failed' || o.status === 'compensated') {
      if (o.status_text) lines.push(o.status_text);
      const why = [];
      if (o.failed_step) why.push(`failed step: ${o.failed_step}`);
      if (o.reason) why.push(`reason: ${o.reason}`);
      if (why.length) lines.push(why.join(' · '));
      lines.push(o.finished ? 'Compensation finished: earlier steps were undone.' : 'Compensation in progress…');
    } else if (o.status_text) {
      lines.push(o.status_text);
    }
    return lines;
  }

  function card(o) {
    const out = outcome(o);
    const li = el('li', `order ${out.kind}`);
    li.dataset.uuid = o.uuid;
    li.dataset.status = o.status;
    li.dataset.outcome = out.kind;
    const head = el('p', 'head');
    const badge = el('span', 'badge');
    const icon = el('span', 'icon', out.icon);
    icon.setAttribute('aria-hidden', 'true');
    badge.append(icon, el('span', 'label', out.label));
    const id = el('span', 'id', 'order ');
    const code = el('code', null, short(o.uuid));
    code.title = o.uuid;
    id.append(code);
    head.append(badge, el('span', 'what', summary(o)), id);
    li.append(head);
    for (const line of details(o)) li.append(el('p', 'detail', line));
    const steps = el('ol', 'steps');
    steps.setAttribute('aria-label', 'Timeline');
    let start = null;
    for (const t of o.timeline || []) {
      const step = el('li', `step ${t.stage}`, STAGE_NAMES[t.stage] || t.stage);
      const text = when(t.at, start);
      if (text) {
        const tag = el('time', null, text);
        tag.dateTime = t.at;
        tag.title = new Date(t.at).toLocaleString();
        step.append(' ', tag);
        start = start || new Date(t.at);
      }
      steps.append(step);
    }
    li.append(steps);
    return li;
  }

  function render(orders) {
    latest = orders;
    const listed = new Set(orders.map((o) => o.uuid));
    for (const uuid of listed) placed.delete(uuid);
    const wanted = [...placed.values()].reverse().concat(orders);
    const changes = [];
    wanted.forEach((o, i) => {
      const key = JSON.stringify(o);
      let c = cards.get(o.uuid);
      if (!c || c.key !== key) {
        const li = card(o);
        if (c) {
          c.li.replaceWith(li);
          if (c.status !== o.status) changes.push(`Order ${summary(o)}: ${outcome(o).label}.`);
        }
        c = { li, key, status: o.status };
        cards.set(o.uuid, c);
      }
      if (list.children[i] !== c.li) list.insertBefore(c.li, list.children[i] || null);
    });
    const keep = new Set(wanted.map((o) => o.uuid));
    for (const [uuid, c] of cards) {
      if (!keep.has(uuid)) {
        c.li.remove();
        cards.delete(uuid);
      }
    }
    empty.hidden = wanted.length > 0;
    // Only changes are spoken, and not the list found on arrival.
    if (rendered && changes.length) announcer.textContent = changes.join(' ');
    rendered = true;
  }

  let timer = 0;
  async function poll() {
    clearTimeout(timer);
    try {
      if (!document.hidden) {
        const res = await fetch(`orders?limit=${LIMIT}`, { headers: { Accept: 'application/json' }, cache: 'no-store' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        render(await res.json());
        connection.hidden = true;
      }
    } catch (e) {
      connection.textContent = `Cannot read the orders right now (${e.message}); retrying.`;
      connection.hidden = false;
    } finally {
      timer = setTimeout(poll, POLL_MS);
    }
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) poll();
  });

  function setFormStatus(text, kind) {
    formStatus.textContent = text;
    formStatus.className = kind || '';
  }

  function clearInvalid() {
    for (const input of form.querySelectorAll('[aria-invalid]')) {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
  }

  form.addEventListener('input', (ev) => {
    ev.target.removeAttribute('aria-invalid');
    ev.target.removeAttribute('aria-describedby');
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    busy = true;
    form.setAttribute('aria-busy', 'true');
    clearInvalid();
    // namedItem, because `elements.item` is a method, not the field named "item".
    const f = (name) => form.elements.namedItem(name);
    const quantity = f('quantity').value.trim();
    // The server checks everything and says which field is wrong; the page does not repeat
    // its rules.
    const body = {
      item: f('item').value.trim(),
      quantity: /^\d+$/.test(quantity) ? Number(quantity) : quantity,
      user: f('user').value.trim(),
    };
    if (f('payment-error').checked) body['payment-error'] = 'null';
    setFormStatus('Placing the order…');
    delete formStatus.dataset.uuid;
    try {
      const res = await fetch('order', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await res.json().catch(() => ({}));
      if (res.status === 202 && answer.uuid) {
        placed.set(answer.uuid, { uuid: answer.uuid, status: 'received', finished: false, timeline: [], ...body });
        formStatus.dataset.uuid = answer.uuid;
        setFormStatus(`Order ${short(answer.uuid)} placed: ${summary(body)}. Follow it below.`, 'ok');
        render(latest);
      } else {
        const input = answer.field && f(answer.field);
        setFormStatus(`Not placed: ${answer.message || `the server answered ${res.status}`}.`, 'error');
        if (input) {
          input.setAttribute('aria-invalid', 'true');
          input.setAttribute('aria-describedby', 'form-status');
          input.focus();
        }
      }
    } catch (e) {
      setFormStatus(`Not placed: the server could not be reached (${e.message}).`, 'error');
    } finally {
      busy = false;
      form.removeAttribute('aria-busy');
    }
  });

  poll();
})();
