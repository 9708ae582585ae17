// Places orders and follows them live: those placed from this browser and any uuid pasted
// in (kept in localStorage), each by polling GET /orders/{uuid}, and, where the server
// lists everyone's orders (GET /orders), those too. Plain ES2020, no build step; every
// piece of server data goes into the DOM through textContent, never as HTML.
'use strict';
(() => {
  const POLL_MS = 1000;
  const LIMIT = 20;
  // Most orders this browser follows; the oldest are forgotten first.
  const MAX_FOLLOWED = 20;
  const FOLLOWED_KEY = 'saga-followed-orders';
  const UUID = /[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}/i;
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
  const followForm = $('follow-form');
  const followInput = $('follow-uuid');
  const followStatus = $('follow-status');
  const list = $('orders');
  const empty = $('empty');
  const listOff = $('list-off');
  const connection = $('connection');
  const announcer = $('announcer');
  // uuid -> {li, key, status}: cards are updated in place, so nothing flickers or loses
  // its place while a saga moves on.
  const cards = new Map();
  // The last view of each order read, by uuid.
  const views = new Map();
  // Orders placed from this page that the server does not show yet: its view is fed by
  // Pub/Sub, so a saga appears there a moment after it was accepted.
  const placed = new Map();
  // Whether the server lists everyone's orders: unknown until it answers.
  let listOn = null;
  let latest = [];
  let rendered = false;
  let busy = false;

  // The canonical form of the first uuid in `text` (a uuid, a status URL, an answer), or
  // null.
  const uuidIn = (text) => {
    const m = UUID.exec(String(text));
    if (!m) return null;
    const h = m[0].replace(/-/g, '').toLowerCase();
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  // Newest first. Storage may be unavailable (private modes, policies): the page then
  // follows orders until it is closed.
  let followed = (() => {
    try {
      const saved = JSON.parse(localStorage.getItem(FOLLOWED_KEY) || '[]');
      return Array.isArray(saved) ? saved.map(uuidIn).filter(Boolean).slice(0, MAX_FOLLOWED) : [];
    } catch (e) {
      return [];
    }
  })();
  function setFollowed(uuids) {
    followed = [...new Set(uuids)].slice(0, MAX_FOLLOWED);
    try {
      localStorage.setItem(FOLLOWED_KEY, JSON.stringify(followed));
    } catch (e) {
      // Kept in memory only.
    }
  }
  const follow = (uuid) => setFollowed([uuid, ...followed.filter((u) => u !== uuid)]);
  function unfollow(uuid) {
    setFollowed(followed.filter((u) => u !== uuid));
    placed.delete(uuid);
  }

  const el = (tag, className, text) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const short = (uuid) => String(uuid).slice(0, 8);
  const summary = (o) => (o.item === undefined ? `order ${short(o.uuid)}` : `${o.quantity} × ${o.item} for ${o.user}`);
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
      case 'unknown':
        return { kind: 'pending', icon: '?', label: 'Not found yet' };
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
    } else if (o.status === 'unknown') {
      lines.push('No order has this uuid yet; a new order shows here a moment after it is placed.');
    } else if (o.status_text) {
      lines.push(o.status_text);
    }
    return lines;
  }

  function card(o, own) {
    const out = outcome(o);
    const li = el('li', `order ${out.kind}`);
    li.dataset.uuid = o.uuid;
    li.dataset.status = o.status;
    li.dataset.outcome = out.kind;
    if (own) li.dataset.followed = 'true';
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
    if (own) {
      const forget = el('button', 'forget', '✕');
      forget.type = 'button';
      forget.dataset.forget = o.uuid;
      forget.title = 'Stop following';
      forget.setAttribute('aria-label', `Stop following order ${short(o.uuid)}`);
      head.append(forget);
    }
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

  // The followed orders first, newest first, then the rest of the server's list.
  function render(listed) {
    latest = listed;
    const own = new Set(followed);
    const wanted = followed
      .map((uuid) => [views.get(uuid) || placed.get(uuid) || { uuid, status: 'unknown', timeline: [] }, true])
      .concat(listed.filter((o) => !own.has(o.uuid)).map((o) => [o, false]));
    const changes = [];
    wanted.forEach(([o, mine], i) => {
      const key = JSON.stringify([o, mine]);
      let c = cards.get(o.uuid);
      if (!c || c.key !== key) {
        const li = card(o, mine);
        if (c) {
          c.li.replaceWith(li);
          if (c.status !== o.status) changes.push(`Order ${summary(o)}: ${outcome(o).label}.`);
        }
        c = { li, key, status: o.status };
        cards.set(o.uuid, c);
      }
      if (list.children[i] !== c.li) list.insertBefore(c.li, list.children[i] || null);
    });
    const keep = new Set(wanted.map(([o]) => o.uuid));
    for (const [uuid, c] of cards) {
      if (!keep.has(uuid)) {
        c.li.remove();
        cards.delete(uuid);
      }
    }
    empty.hidden = wanted.length > 0;
    listOff.hidden = listOn !== false;
    // Only changes are spoken, and not the list found on arrival.
    if (rendered && changes.length) announcer.textContent = changes.join(' ');
    rendered = true;
  }

  const getJson = async (url) => {
    const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  };

  // Everyone's latest orders, or [] where the server keeps them to itself.
  async function readList() {
    if (listOn === false) return [];
    const { status, body } = await getJson(`orders?limit=${LIMIT}`);
    if (status === 404 && body.error === 'order_list_disabled') {
      listOn = false;
      return [];
    }
    if (status !== 200) throw new Error(`HTTP ${status}`);
    listOn = true;
    return body;
  }

  // Reads one followed order. 404 is normal for a moment after an order is placed.
  async function readOne(uuid) {
    const { status, body } = await getJson(`orders/${encodeURIComponent(uuid)}`);
    if (status === 200) {
      views.set(uuid, body);
      placed.delete(uuid);
    } else if (status === 400) {
      unfollow(uuid);
    } else if (status !== 404) {
      throw new Error(`HTTP ${status}`);
    }
  }

  let timer = 0;
  async function poll() {
    clearTimeout(timer);
    try {
      if (!document.hidden) {
        const listed = await readList();
        for (const o of listed) {
          views.set(o.uuid, o);
          placed.delete(o.uuid);
        }
        const inList = new Set(listed.map((o) => o.uuid));
        // A finished saga does not change any more: it is not asked for again.
        const pending = followed.filter((uuid) => !inList.has(uuid) && !(views.get(uuid) || {}).finished);
        await Promise.all(pending.map(readOne));
        render(listed);
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

  // The order whose last attempt failed without a clear answer, and its idempotency key.
  let pending = null;
  const newKey = () =>
    crypto.randomUUID
      ? crypto.randomUUID()
      : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');

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
    const text = JSON.stringify(body);
    // An attempt that failed (5xx, no answer) may still have placed the order: placing the
    // same order again sends the same key, so the server answers with that order instead
    // of starting a second one. A changed order gets a new key.
    if (!pending || pending.text !== text) pending = { text, key: newKey() };
    setFormStatus('Placing the order…');
    delete formStatus.dataset.uuid;
    try {
      const res = await fetch('order', {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'Idempotency-Key': pending.key,
        },
        body: text,
      });
      const answer = await res.json().catch(() => ({}));
      // Only a server error leaves the outcome open; any other answer settles the key.
      if (res.status < 500) pending = null;
      if (res.status === 202 && answer.uuid) {
        placed.set(answer.uuid, { uuid: answer.uuid, status: 'received', finished: false, timeline: [], ...body });
        follow(answer.uuid);
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

  followInput.addEventListener('input', () => followInput.removeAttribute('aria-invalid'));
  followForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const uuid = uuidIn(followInput.value);
    if (!uuid) {
      followInput.setAttribute('aria-invalid', 'true');
      followStatus.textContent = 'Not an order uuid: paste the uuid that placing the order answered with.';
      followStatus.className = 'error';
      followInput.focus();
      return;
    }
    follow(uuid);
    followInput.value = '';
    followStatus.textContent = `Following order ${short(uuid)}.`;
    followStatus.className = 'ok';
    render(latest);
    poll();
  });

  list.addEventListener('click', (ev) => {
    const uuid = ev.target.dataset && ev.target.dataset.forget;
    if (!uuid) return;
    unfollow(uuid);
    render(latest);
  });

  poll();
})();
