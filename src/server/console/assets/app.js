// The gatehouse console: a hash-routed page over /console/api. Everything the server says is put
// into the page as text (textContent), never as markup; the page holds no secret of its own.
import { actDigest, loadSigningKey, signAct, triageAct } from './act.js';
import { seriesChart, timeline } from './charts.js';
import { fromBase64, fromHex, leafHash, toHex, verifyConsistency, verifyInclusion } from './merkle.js';
import { verifyCheckpoint } from './note.js';
import { buildLogOfBundle, entryRecordsPayload, sha256Hex } from './provenance.js';

let csrf;
let role;
let oidcLogin = null;
const byId = (id) => document.getElementById(id);
const view = () => byId('view');

/** An element with attributes and children (strings become text). */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat())
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}

class Unauthorized extends Error {}

async function api(path, init = {}) {
  const res = await fetch(`/console/api${path}`, {
    credentials: 'same-origin',
    ...init,
    headers: {
      accept: 'application/json',
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(csrf === undefined ? {} : { 'x-gatehouse-csrf': csrf }),
      ...init.headers,
    },
  });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 && !path.startsWith('/login')) {
    showLogin();
    throw new Unauthorized(body.error?.message ?? 'log in first');
  }
  if (!res.ok) throw new Error(body.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function showLogin() {
  csrf = undefined;
  role = undefined;
  byId('nav').hidden = true;
  byId('whoami').textContent = '';
  view().replaceChildren();
  byId('login').hidden = false;
  const oidc = byId('oidc-login');
  oidc.hidden = oidcLogin === null;
  if (oidcLogin !== null) oidc.textContent = `Log in with ${new URL(oidcLogin.issuer).host}`;
  byId('token').focus();
}

function showApp(session) {
  csrf = session.csrf;
  role = session.role;
  byId('login').hidden = true;
  byId('nav').hidden = false;
  byId('whoami').textContent = `${session.who ?? ''} · ${session.role}`;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
const short = (s, n = 12) => (s.length > n ? `${s.slice(0, n)}…` : s);
const stateCell = (s) => h('span', { class: `state state-${s}` }, s);
const reasons = (rs) =>
  rs.length === 0
    ? h('span', { class: 'muted' }, 'none')
    : h('ul', { class: 'reasons' }, ...rs.map((r) => h('li', {}, h('code', {}, r.rule), ' ', r.message)));
const table = (head, rows, label) =>
  h(
    'table',
    { 'aria-label': label },
    h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
  );

function page(title, ...content) {
  const h1 = h('h1', { tabindex: '-1' }, title);
  view().replaceChildren(h1, ...content);
  document.title = `${title} · gatehouse console`;
  h1.focus();
}

async function jobsView() {
  const { jobs } = await api('/jobs?limit=200');
  page(
    'Jobs',
    table(
      ['Job', 'Project', 'State', 'Host', 'Created', 'Steps'],
      jobs.map((j) => [
        h('a', { href: `#/jobs/${encodeURIComponent(j.id)}` }, h('code', {}, short(j.id, 13))),
        j.project,
        stateCell(j.state),
        j.host ?? '',
        when(j.createdAt),
        String(j.steps.length),
      ]),
      'Jobs',
    ),
  );
}

async function jobView(id) {
  const { job, decisions, refusals } = await api(`/jobs/${encodeURIComponent(id)}`);
  page(
    `Job ${short(job.id, 13)}`,
    h(
      'p',
      {},
      'Project ',
      h('strong', {}, job.project),
      ' · ',
      stateCell(job.state),
      job.host ? ` · host ${job.host}` : '',
      ` · created ${when(job.createdAt)}`,
    ),
    h('h2', {}, 'Lifecycle'),
    timeline(job.steps),
    table(
      ['Step', 'Started', 'Duration', 'Result', 'Detail'],
      job.steps.map((s) => [
        s.name,
        when(s.startedAt),
        `${s.durationMs} ms`,
        h('span', { class: s.ok ? 'ok' : 'bad' }, s.ok ? 'ok' : 'failed'),
        s.detail ?? '',
      ]),
      'Lifecycle steps',
    ),
    h('h2', {}, 'Decisions'),
    decisionsTable(decisions),
    job.result?.error ? h('p', { class: 'error' }, `Error: ${job.result.error}`) : '',
    refusals.length > 0 ? h('h2', {}, 'Attestation refusals') : '',
    refusals.length > 0 ? refusalsTable(refusals) : '',
    buildLogSection(job),
  );
}

/**
 * The build log as text (never markup: its bytes are the build's), its SHA-256 computed here,
 * and checked against the digest the signed provenance names, whose statement is checked against
 * the transparency log entry its bundle cites, with an inclusion proof under a verified checkpoint.
 */
function buildLogSection(job) {
  const digestLine = h('p', { id: 'log-digest', class: 'verified', role: 'status' }, 'reading the log…');
  const provenanceLine = h('p', { id: 'log-provenance', class: 'verified', role: 'status' });
  const text = h('pre', { id: 'build-log', class: 'build-log', tabindex: '0', 'aria-label': 'Build log' });
  const section = h(
    'section',
    { 'aria-label': 'Build log' },
    h('h2', {}, 'Build log'),
    digestLine,
    provenanceLine,
    text,
  );
  void (async () => {
    const res = await fetch(`/console/api/jobs/${encodeURIComponent(job.id)}/log`, {
      credentials: 'same-origin',
    });
    if (res.status === 404) {
      digestLine.textContent = 'No build log was kept for this job.';
      return;
    }
    if (!res.ok) throw new Error(`the log cannot be read (HTTP ${res.status})`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const digest = await sha256Hex(bytes);
    text.textContent = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    const served = res.headers.get('gatehouse-log-sha256');
    const cut =
      res.headers.get('gatehouse-log-truncated') === 'true' ? ' (cut to its first and last half MiB)' : '';
    digestLine.append(h('code', { id: 'log-sha256' }, digest));
    if (served !== digest) {
      digestLine.dataset.state = 'failed';
      digestLine.firstChild.textContent = `✘ the served bytes are not the digest the server names (${served}): `;
    } else {
      digestLine.dataset.state = 'ok';
      digestLine.firstChild.textContent = `✔ ${bytes.length} bytes${cut}, SHA-256 computed in this browser: `;
    }
    const { bundle } = await api(`/jobs/${encodeURIComponent(job.id)}/provenance`);
    if (bundle === null) {
      provenanceLine.textContent =
        'No signed provenance for this job (its build was not signed), so nothing to check the log against.';
      return;
    }
    const named = await buildLogOfBundle(bundle);
    if (named.digest === null) {
      provenanceLine.textContent = 'The signed provenance names no build log.';
      return;
    }
    if (named.digest !== digest)
      throw new Error(`the provenance names build.log ${named.digest}, not these bytes`);
    const { checkpoint, logKeys } = await api('/log/checkpoint');
    const cp = await verifyCheckpoint(checkpoint, logKeys.map((k) => k.spki).filter(Boolean));
    const e = await api(`/log/entries/${named.logIndex}?treeSize=${cp.treeSize}`);
    const body = fromBase64(e.body);
    await verifyInclusion(
      named.logIndex,
      cp.treeSize,
      await leafHash(body),
      e.inclusionProof.hashes.map(fromHex),
      cp.rootHash,
    );
    if (!entryRecordsPayload(body, named.payloadSha256))
      throw new Error(`log entry #${named.logIndex} does not record this provenance`);
    provenanceLine.dataset.state = 'ok';
    provenanceLine.textContent = `✔ the signed provenance names this digest for build.log, and its statement is log entry #${named.logIndex}, included in the verified checkpoint of ${cp.treeSize} entries`;
  })().catch((err) => {
    if (err instanceof Unauthorized) return;
    provenanceLine.dataset.state = 'failed';
    provenanceLine.textContent = `✘ ${err.message}`;
  });
  return section;
}

function decisionsTable(decisions) {
  return table(
    ['Decision', 'Project', 'Outcome', 'Reasons', 'Policy digest', 'Log', 'Triage'],
    decisions.map((d) => [
      h('code', {}, short(d.id, 13)),
      h('span', {}, d.project, ' ', h('a', { href: `#/jobs/${encodeURIComponent(d.jobId)}` }, 'job')),
      stateCell(d.outcome),
      reasons(d.reasons),
      h('code', { title: d.policyDigest }, short(d.policyDigest, 19)),
      h(
        'span',
        {},
        h('a', { href: `#/log/${d.logIndex}` }, `#${d.logIndex}`),
        ' ',
        h('a', { href: `#/sbom/${encodeURIComponent(d.id)}` }, 'SBOM'),
      ),
      d.triage ? `${d.triage.action}d (#${d.triage.logIndex})` : '',
    ]),
    'Decisions',
  );
}

async function sbomView(id) {
  const s = await api(`/decisions/${encodeURIComponent(id)}/sbom`);
  page(
    `SBOM of ${short(s.decisionId, 13)}`,
    h(
      'p',
      {},
      `${s.project} · `,
      stateCell(s.outcome),
      s.known ? '' : ' · no components kept for this decision',
    ),
    h('h2', {}, `Findings (${s.findings.length})`),
    s.findings.length === 0
      ? h('p', {}, 'No known vulnerability in its components.')
      : table(
          ['Vulnerability', 'Component', 'Severity', 'VEX'],
          s.findings.map((f) => [
            h('code', { title: f.aliases.join(', ') }, f.vulnId),
            h('code', {}, f.purl),
            f.severity,
            f.vex === null
              ? h('span', { class: 'bad' }, 'affected (no VEX statement settles it)')
              : h(
                  'span',
                  { class: 'ok' },
                  `${f.vex.status}${f.vex.justification ? `: ${f.vex.justification}` : ''} (${f.vex.document})`,
                ),
          ]),
          'Findings',
        ),
    s.unmatched.length > 0
      ? h(
          'p',
          { class: 'warn' },
          `${s.unmatched.length} component(s) could not be matched against their advisories.`,
        )
      : '',
    h('h2', {}, `Components (${s.components.length})`),
    s.environment
      ? h(
          'p',
          { class: 'muted' },
          `Plus ${s.environment.packages} packages of the build environment `,
          h('code', {}, short(s.environment.digest, 23)),
        )
      : '',
    table(
      ['Name', 'Version', 'purl', 'Scope', 'Licences'],
      s.components.map((c) => [
        c.name,
        c.version,
        h('code', {}, c.purl),
        c.scope ?? '',
        (c.licenses ?? []).join(', '),
      ]),
      'Components',
    ),
  );
}

async function decisionsView() {
  const { decisions } = await api('/decisions?limit=200');
  page('Decisions', decisionsTable(decisions));
}

async function quarantineView() {
  const { held } = await api('/quarantine');
  page(
    'Quarantine',
    h(
      'p',
      { class: 'muted' },
      'Releasing or rejecting is an act of the security role: prepare it here, then sign it with the security key, ' +
        'loaded into this page only (it never leaves the browser), or with `gatehouse triage` on the command line.',
    ),
    held.length === 0 ? h('p', {}, 'Nothing is waiting in quarantine.') : '',
    ...held.map(triageCard),
  );
}

function triageCard(d) {
  const out = h('div', { class: 'prepared', 'aria-live': 'polite' });
  const status = h('p', { class: 'verified', role: 'status' });
  const action = h(
    'select',
    { id: `action-${d.id}`, name: 'action' },
    h('option', { value: 'release' }, 'release'),
    h('option', { value: 'reject' }, 'reject'),
  );
  const reason = h('textarea', { id: `reason-${d.id}`, name: 'reason', rows: '2', required: true });
  const keyFile = h('input', { id: `key-${d.id}`, type: 'file', accept: '.pem,.key' });
  let prepared;
  const prepare = async () => {
    if (reason.value.trim() === '') throw new Error('a triage act needs a reason');
    const act = triageAct(d.id, action.value, reason.value);
    const digest = await actDigest(act);
    prepared = act;
    const cmd = `gatehouse triage ${act.content.action} ${d.id} --reason ${JSON.stringify(act.content.reason)}`;
    out.replaceChildren(
      h('h3', {}, 'Act to sign'),
      h('pre', { class: 'act-json' }, JSON.stringify(act, null, 2)),
      h('p', {}, 'SHA-256 of the signed bytes: ', h('code', { class: 'act-digest' }, digest)),
      h('p', {}, 'Or on the command line: ', h('code', {}, cmd)),
    );
    return act;
  };
  const submit = async (ev) => {
    ev.preventDefault();
    status.textContent = '';
    status.removeAttribute('data-state');
    try {
      const act =
        prepared?.content.action === action.value && prepared?.content.reason === reason.value
          ? prepared
          : await prepare();
      const file = keyFile.files?.[0];
      if (file === undefined) throw new Error('load the security key (PKCS#8 PEM) to sign');
      const { key, keyId } = await loadSigningKey(await file.text());
      keyFile.value = '';
      const signature = await signAct(act, key);
      const r = await api('/triage', {
        method: 'POST',
        body: JSON.stringify({
          decisionId: d.id,
          action: act.content.action,
          reason: act.content.reason,
          signature,
          keyId,
        }),
      });
      status.dataset.state = 'ok';
      status.textContent = `${r.action === 'release' ? 'Released' : 'Rejected'}: logged as entry #${r.logIndex}${r.placement ? `, promoted to ${r.placement}` : ''}`;
    } catch (e) {
      if (e instanceof Unauthorized) return;
      status.dataset.state = 'failed';
      status.textContent = e.message;
    }
  };
  return h(
    'article',
    { class: 'card', 'data-decision': d.id },
    h('h2', {}, h('code', {}, d.id), ' ', stateCell(d.outcome)),
    h(
      'p',
      {},
      `${d.project} · `,
      h('a', { href: `#/jobs/${encodeURIComponent(d.jobId)}` }, 'job'),
      ` · ${when(d.createdAt)} · log `,
      h('a', { href: `#/log/${d.logIndex}` }, `#${d.logIndex}`),
    ),
    reasons(d.reasons),
    d.releasable
      ? ''
      : h('p', { class: 'warn' }, 'Its submission never verified: it can be rejected, not released.'),
    role === 'triager'
      ? ''
      : h(
          'p',
          { class: 'muted viewer-note' },
          'You are logged in as a viewer: prepare the act and sign it with `gatehouse triage`, or ask a triager to submit it here.',
        ),
    h(
      'form',
      { class: 'triage', onsubmit: submit },
      h('label', { for: action.id }, 'Action'),
      action,
      h('label', { for: reason.id }, 'Reason'),
      reason,
      h(
        'button',
        {
          type: 'button',
          onclick: () =>
            prepare().catch((e) => {
              status.dataset.state = 'failed';
              status.textContent = e.message;
            }),
        },
        'Prepare act',
      ),
      role === 'triager'
        ? h('label', { for: keyFile.id }, 'Security key (PKCS#8 PEM, stays in this page)')
        : '',
      role === 'triager' ? keyFile : '',
      role === 'triager' ? h('button', { type: 'submit' }, 'Sign and submit') : '',
    ),
    out,
    status,
  );
}

function refusalsTable(refusals) {
  return table(
    ['When', 'Stage', 'Host', 'Job', 'Failed checks'],
    refusals.map((r) => [
      when(r.createdAt),
      r.stage,
      r.host ?? '',
      r.jobId
        ? h('a', { href: `#/jobs/${encodeURIComponent(r.jobId)}` }, h('code', {}, short(r.jobId, 13)))
        : '',
      h(
        'ul',
        { class: 'reasons' },
        ...r.failedChecks.map((f) => h('li', {}, h('code', {}, f.check), ' ', f.message)),
      ),
    ]),
    'Attestation refusals',
  );
}

async function refusalsView() {
  const { refusals, byCheck, byHost } = await api('/refusals');
  const counts = (o, label) =>
    table(
      [label, 'Refusals'],
      Object.entries(o)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => [h('code', {}, k), String(n)]),
      `Refusals by ${label.toLowerCase()}`,
    );
  page(
    'Attestation refusals',
    refusals.length === 0 ? h('p', {}, 'No attestation was refused.') : '',
    h('h2', {}, 'By check'),
    counts(byCheck, 'Check'),
    h('h2', {}, 'By host'),
    counts(byHost, 'Host'),
    h('h2', {}, 'Latest'),
    refusalsTable(refusals),
  );
}

function formatOf(unit) {
  if (unit === 'ratio') return (v) => (v === null ? '–' : `${(v * 100).toFixed(1)} %`);
  if (unit === 'seconds')
    return (v) => (v === null ? '–' : v < 120 ? `${v.toFixed(2)} s` : `${(v / 60).toFixed(1)} min`);
  return (v) => (v === null ? '–' : String(Math.round(v)));
}

async function metricsView() {
  const m = await api('/metrics');
  page(
    'Metrics',
    h(
      'p',
      { class: 'muted' },
      `From the store, in steps of ${Math.round(m.stepMs / 60000)} min; live counters at /metrics.`,
    ),
    h(
      'div',
      { class: 'cards' },
      ...m.series.map((s) => {
        const f = formatOf(s.unit);
        return h(
          'section',
          { class: 'card', 'data-metric': s.name, 'aria-label': s.title },
          h('h2', {}, s.title),
          h('div', { class: 'value', 'data-value': s.current ?? '' }, f(s.current)),
          seriesChart(s, f),
        );
      }),
    ),
  );
}

const SEEN = 'gatehouse.console.checkpoint';

async function logView(index) {
  const { checkpoint, logKeys } = await api('/log/checkpoint');
  const status = h('p', { class: 'verified', id: 'checkpoint-status', role: 'status' }, 'verifying…');
  const consistency = h('p', { class: 'verified', id: 'consistency-status', role: 'status' });
  const entryOut = h('div', { id: 'entry' });
  const indexInput = h('input', { id: 'entry-index', type: 'number', min: '0', value: index ?? '' });
  page(
    'Transparency log',
    h('pre', { id: 'checkpoint' }, checkpoint),
    status,
    consistency,
    h(
      'form',
      {
        onsubmit: (ev) => {
          ev.preventDefault();
          location.hash = `#/log/${indexInput.value}`;
        },
      },
      h('label', { for: 'entry-index' }, 'Entry index '),
      indexInput,
      h('button', { type: 'submit' }, 'Prove inclusion'),
    ),
    entryOut,
  );
  let cp;
  try {
    cp = await verifyCheckpoint(checkpoint, logKeys.map((k) => k.spki).filter(Boolean));
    status.dataset.state = 'ok';
    status.textContent = `✔ checkpoint signed by ${cp.keyName} (trusted root key): ${cp.treeSize} entries, root ${toHex(cp.rootHash).slice(0, 16)}…`;
  } catch (e) {
    status.dataset.state = 'failed';
    status.textContent = `✘ ${e.message}`;
    return;
  }
  // The last checkpoint this browser verified: the log must have grown from it, never rewritten it.
  const seen = JSON.parse(localStorage.getItem(SEEN) ?? 'null');
  try {
    if (seen && seen.size > 0 && seen.size <= cp.treeSize) {
      const p = await api(`/log/consistency?first=${seen.size}&second=${cp.treeSize}`);
      await verifyConsistency(seen.size, cp.treeSize, fromHex(seen.root), cp.rootHash, p.hashes.map(fromHex));
      consistency.dataset.state = 'ok';
      consistency.textContent = `✔ consistent with the checkpoint this browser saw before (${seen.size} entries)`;
    } else if (seen && seen.size > cp.treeSize) {
      throw new Error(`the log shrank from ${seen.size} to ${cp.treeSize} entries`);
    } else {
      consistency.textContent = 'First visit from this browser: the next one proves the log only grew.';
    }
    localStorage.setItem(SEEN, JSON.stringify({ size: cp.treeSize, root: toHex(cp.rootHash) }));
  } catch (e) {
    if (e instanceof Unauthorized) return;
    consistency.dataset.state = 'failed';
    consistency.textContent = `✘ ${e.message}`;
  }
  if (index !== undefined && index !== '') await showEntry(Number(index), cp, entryOut);
}

async function showEntry(index, cp, out) {
  const result = h('p', { class: 'verified', id: 'inclusion-status', role: 'status' }, 'proving…');
  out.replaceChildren(h('h2', {}, `Entry #${index}`), result);
  try {
    const e = await api(`/log/entries/${index}?treeSize=${cp.treeSize}`);
    const body = fromBase64(e.body);
    const p = e.inclusionProof;
    if (p.treeSize !== cp.treeSize) throw new Error('the proof is for another tree size');
    await verifyInclusion(index, cp.treeSize, await leafHash(body), p.hashes.map(fromHex), cp.rootHash);
    result.dataset.state = 'ok';
    result.textContent = `✔ included in the signed checkpoint of ${cp.treeSize} entries (${p.hashes.length} proof hashes, verified in this browser)`;
    out.append(
      h('pre', { class: 'entry-body' }, JSON.stringify(JSON.parse(new TextDecoder().decode(body)), null, 2)),
    );
  } catch (err) {
    if (err instanceof Unauthorized) return;
    result.dataset.state = 'failed';
    result.textContent = `✘ ${err.message}`;
  }
}

const routes = [
  [/^#\/jobs\/([^/]+)$/, (m) => jobView(decodeURIComponent(m[1])), 'jobs'],
  [/^#\/jobs$/, jobsView, 'jobs'],
  [/^#\/decisions$/, decisionsView, 'decisions'],
  [/^#\/sbom\/([^/]+)$/, (m) => sbomView(decodeURIComponent(m[1])), 'decisions'],
  [/^#\/quarantine$/, quarantineView, 'quarantine'],
  [/^#\/refusals$/, refusalsView, 'refusals'],
  [/^#\/metrics$/, metricsView, 'metrics'],
  [/^#\/log(?:\/(\d+))?$/, (m) => logView(m[1]), 'log'],
];

async function route() {
  if (byId('nav').hidden) return;
  const hash = location.hash === '' || location.hash === '#' ? '#/jobs' : location.hash;
  const found = routes.find(([re]) => re.test(hash));
  if (found === undefined) {
    page('Not found', h('p', {}, 'No such page.'));
    return;
  }
  for (const a of byId('nav').querySelectorAll('a'))
    if (a.getAttribute('href') === `#/${found[2]}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  try {
    await found[1](found[0].exec(hash));
  } catch (e) {
    if (!(e instanceof Unauthorized)) page('Error', h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

byId('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = byId('token');
  try {
    const s = await api('/login', { method: 'POST', body: JSON.stringify({ token: input.value }) });
    input.value = '';
    byId('login-error').textContent = '';
    showApp(s);
    await route();
  } catch (e) {
    byId('login-error').textContent = e.message;
  }
});

byId('logout').addEventListener('click', async () => {
  await api('/logout', { method: 'POST', body: '{}' }).catch(() => undefined);
  showLogin();
});

window.addEventListener('hashchange', () => void route());

try {
  const s = await api('/session');
  oidcLogin = s.oidc ?? null;
  if (!s.loggedIn) throw new Unauthorized('log in first');
  showApp(s);
  await route();
} catch {
  showLogin();
}
