// Arena dashboard: JSON-RPC over HTTP to this page's origin, live heads over its WebSocket.
// No framework, no CDN; every page is a function that fetches and renders.
"use strict";

let rpcId = 0;
let props = { tokenDecimals: 12, tokenSymbol: "ARENA" };
const heads = { best: null, finalized: null };

async function rpc(method, ...params) {
  const reply = await fetch("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  const body = await reply.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

function esc(value) {
  return String(value ?? "–").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function amount(units) {
  if (units === null || units === undefined) return "–";
  const d = props.tokenDecimals;
  const big = BigInt(units);
  const whole = big / 10n ** BigInt(d);
  let frac = (big % 10n ** BigInt(d)).toString().padStart(d, "0").replace(/0+$/, "");
  if (frac.length > 4) frac = frac.slice(0, 4);
  return `${whole}${frac ? "." + frac : ""} ${props.tokenSymbol}`;
}

function short(text) {
  const s = String(text ?? "");
  return s.length > 18 ? `${s.slice(0, 8)}…${s.slice(-6)}` : s;
}

function accountLink(address) {
  return address ? `<a href="#/account/${esc(address)}" class="mono" title="${esc(address)}">${esc(short(address))}</a>` : "–";
}

function table(headers, rows, testid) {
  const head = headers.map((h) => `<th>${esc(h)}</th>`).join("");
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
  return `<table data-testid="${testid}"><thead><tr>${head}</tr></thead><tbody>${body || `<tr><td colspan="${headers.length}">none</td></tr>`}</tbody></table>`;
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–";
}

// ------------------------------------------------------------------ pages

async function chainPage() {
  const [health, blocks, peers] = await Promise.all([rpc("system_health"), rpc("arena_blocks", 20), rpc("system_peers")]);
  const finalizedHash = await rpc("chain_getFinalizedHead");
  return `<h2>Chain</h2>
  <div class="cards">
    <div class="card">best<b data-testid="best">#${esc(health.best)}</b></div>
    <div class="card">finalized<b data-testid="finalized">#${esc(health.finalized)}</b><span class="mono">${esc(short(finalizedHash))}</span></div>
    <div class="card">peers<b>${esc(health.peers)}</b>${health.isSyncing ? "syncing" : "in sync"}</div>
  </div>
  <h3>Recent blocks</h3>
  ${table(["#", "hash", "author", "time (UTC)", "extrinsics", "events", "finalized"], blocks.map((b) => [
    `<a href="#/block/${b.number}">${b.number}</a>`, `<span class="mono">${esc(short(b.hash))}</span>`, accountLink(b.author),
    esc(time(b.timestamp)), esc(b.extrinsics), esc(b.events), b.finalized ? "yes" : "no"]), "blocks")}
  <h3>Peers</h3>
  ${table(["peer", "details"], peers.map((p) => [`<span class="mono">${esc(p.peerId ?? "")}</span>`, `<code>${esc(JSON.stringify(p))}</code>`]), "peers")}`;
}

async function blockPage(ref) {
  const asNumber = /^\d+$/.test(ref) ? Number(ref) : ref;
  const block = await rpc("arena_blockDetail", asNumber);
  const h = block.header;
  const xts = block.extrinsics.map((x, i) => [esc(i), `<span class="mono">${esc(short(x.hash))}</span>`, accountLink(x.signer),
    esc(x.call ? `${x.call.module}.${x.call.function}` : x.error), `<code>${esc(JSON.stringify(x.call ? x.call.args : []))}</code>`, esc(x.nonce)]);
  const events = block.events.map((e) => [esc(e.phase), esc(`${e.module}.${e.name}`), `<code>${esc(JSON.stringify(e.fields ?? e.data))}</code>`]);
  return `<h2>Block #${esc(h.number)}</h2>
  <p>${block.finalized ? "finalized" : "not finalized"} · author ${accountLink(h.author)} · ${esc(time(h.timestamp))} UTC</p>
  ${table(["field", "value"], [["hash", h.hash], ["parent", h.parentHash], ["state root", h.stateRoot], ["extrinsics root", h.extrinsicsRoot]]
    .map(([k, v]) => [esc(k), `<span class="mono">${esc(v)}</span>`]), "header")}
  <p><a href="#/block/${h.number - 1}">← parent</a> · <a href="#/block/${h.number + 1}">child →</a></p>
  <h3>Extrinsics</h3>${table(["#", "hash", "signer", "call", "args", "nonce"], xts, "extrinsics")}
  <h3>Events</h3>${table(["phase", "event", "fields"], events, "events")}`;
}

async function tasksPage() {
  const tasks = await rpc("arena_tasks");
  return `<h2>Tasks</h2>${table(["id", "kind", "status", "creator", "reward pool", "top model"], tasks.map((t) => [
    `<a href="#/task/${t.id}">${t.id}</a>`, esc(t.kind), esc(t.status), accountLink(t.creator), esc(amount(t.rewardPool)),
    `<span class="mono">${esc(t.topModel)}</span>`]), "tasks")}`;
}

const PHASES = ["selection", "training", "model_reveal", "validation", "reveal", "finalized"];

function heatColour(score, max) {
  if (score === null || score === undefined) return "#eee";
  const t = max ? score / max : 0;
  return `hsl(${Math.round(10 + 110 * t)}, 70%, ${Math.round(85 - 35 * t)}%)`;
}

// A training curve as an inline SVG: loss (left axis, blue) and accuracy (right axis 0–100 %, green).
function curveSvg(curve) {
  const pts = curve.points;
  if (!pts.length) return "<p>no points recorded</p>";
  const W = 360, H = 160, L = 44, R = 40, T = 10, B = 28;
  const xs = pts.map((p) => p[curve.unit]);
  const losses = pts.map((p) => p.loss);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), lMax = Math.max(...losses) || 1;
  const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
  const sy = (v, max) => T + (1 - v / max) * (H - T - B);
  const line = (vals, max) => pts.map((p, i) => `${sx(xs[i]).toFixed(1)},${sy(vals[i], max).toFixed(1)}`).join(" ");
  const accs = pts.map((p) => p.accuracy);
  const hasAcc = accs.every((a) => typeof a === "number");
  const dots = (vals, max, colour, cls) => pts.length > 40 ? "" : pts.map((p, i) =>
    `<circle class="${cls}" cx="${sx(xs[i]).toFixed(1)}" cy="${sy(vals[i], max).toFixed(1)}" r="2.5" fill="${colour}"><title>${esc(curve.unit)} ${esc(xs[i])}: ${esc(vals[i].toFixed(4))}</title></circle>`).join("");
  return `<svg class="curve" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="training curve">
    <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#889"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#889"/>
    <text x="${L - 4}" y="${T + 8}" text-anchor="end" font-size="10">${esc(lMax.toFixed(2))}</text>
    <text x="${L - 4}" y="${H - B}" text-anchor="end" font-size="10">0</text>
    <text x="${L}" y="${H - 8}" font-size="10">${esc(curve.unit)} ${esc(x0)}</text>
    <text x="${W - R}" y="${H - 8}" text-anchor="end" font-size="10">${esc(x1)}</text>
    <polyline data-series="loss" points="${line(losses, lMax)}" fill="none" stroke="#2b6cd4" stroke-width="2"/>${dots(losses, lMax, "#2b6cd4", "pt-loss")}
    ${hasAcc ? `<line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#889"/>
    <text x="${W - R + 4}" y="${T + 8}" font-size="10">100%</text><text x="${W - R + 4}" y="${H - B}" font-size="10">0%</text>
    <polyline data-series="accuracy" points="${line(accs, 1)}" fill="none" stroke="#2a9d5a" stroke-width="2"/>${dots(accs, 1, "#2a9d5a", "pt-acc")}` : ""}
  </svg>`;
}

async function curvesSection(trainers) {
  const withModel = trainers.filter((t) => t.modelCid);
  const curves = await Promise.all(withModel.map((t) => rpc("arena_trainingCurve", t.modelCid).catch(() => null)));
  const blocks = withModel.map((t, i) => {
    const c = curves[i];
    if (!c) return `<div class="curvebox" data-testid="curve" data-trainer="${esc(t.address)}">${accountLink(t.address)}<p>no curve on this node (the model is not stored here, or its trainer recorded none)</p></div>`;
    const last = c.points[c.points.length - 1];
    const acc = last && typeof last.accuracy === "number" ? ` · accuracy <b data-testid="curve-accuracy">${esc((100 * last.accuracy).toFixed(1))} %</b>` : "";
    return `<div class="curvebox" data-testid="curve" data-trainer="${esc(t.address)}">${accountLink(t.address)}
      <p>${esc(c.points.length)} ${esc(c.unit)}${c.points.length === 1 ? "" : "s"} · training ${esc(c.loss)} loss <b data-testid="curve-first-loss">${esc(c.points[0].loss.toFixed(4))}</b> →
      <b data-testid="curve-last-loss">${esc(last.loss.toFixed(4))}</b>${acc}</p>${curveSvg(c)}</div>`;
  });
  return blocks.length ? `<div class="curves">${blocks.join("")}</div><p>blue: training loss (nats); green: training accuracy. Recorded by each trainer in its model file.</p>`
    : "<p>No model submitted yet.</p>";
}

async function taskPage(id) {
  const taskId = Number(id);
  const [task, board, scores] = await Promise.all([rpc("arena_task", taskId), rpc("arena_leaderboard", taskId), rpc("arena_scores", taskId)]);
  if (!task) return `<p class="error">task ${esc(id)} does not exist</p>`;
  const reached = new Map(task.timeline.map((p) => [p.status, p]));
  const phases = [...PHASES, ...task.timeline.map((p) => p.status).filter((s) => !PHASES.includes(s))];
  const timeline = phases.map((s) => {
    const p = reached.get(s);
    return `<div class="${s === task.status ? "current" : ""}" data-phase="${esc(s)}">${esc(s)}${p ? ` · #${esc(p.block)}` : ""}</div>`;
  }).join("");
  const max = Math.max(0, ...scores.rows.flatMap((r) => r.scores.filter((s) => s !== null)));
  const heat = `<table class="heat" data-testid="heatmap"><thead><tr><th>validator \\ trainer</th>${scores.trainers.map((t) => `<th>${accountLink(t)}</th>`).join("")}</tr></thead><tbody>
    ${scores.rows.map((r) => `<tr><th>${accountLink(r.validator)}</th>${r.scores.map((s) => `<td class="cell" data-heat="${esc(heatColour(s, max))}">${esc(s)}</td>`).join("")}</tr>`).join("")}
    <tr><th>consensus</th>${scores.consensus.map((c) => `<td class="cell"><b>${esc(c.consensusScore)}</b></td>`).join("")}</tr></tbody></table>`;
  const curves = await curvesSection(task.trainers);
  const maxReward = Math.max(1, ...board.entries.map((e) => e.reward));
  const leaderboard = table(["rank", "trainer", "consensus score", "held-out loss (nats)", "reward", "", "model"], board.entries.map((e) => {
    const c = scores.consensus.find((x) => x.trainer === e.address);
    return [esc(e.rank), accountLink(e.address), esc(e.consensusScore), esc(c && c.lossNats !== null ? c.lossNats.toFixed(4) : "–"),
      esc(amount(e.reward)), `<span class="bar" data-width="${Math.round(120 * e.reward / maxReward)}"></span>`, `<span class="mono">${esc(e.modelCid)}</span>`];
  }), "leaderboard");
  return `<h2>Task ${esc(task.id)} · ${esc(task.kind)} · <span data-testid="task-status">${esc(task.status)}</span></h2>
  <div class="timeline" data-testid="timeline">${timeline}</div>
  <div class="cards">
    <div class="card">reward pool<b>${esc(amount(task.rewardPool))}</b>+ emission ${esc(amount(task.emission))}</div>
    <div class="card">creator<b>${accountLink(task.creator)}</b></div>
    <div class="card">top model<b class="mono" data-testid="top-model">${esc(task.topModel)}</b></div>
  </div>
  <h3>Selected trainers</h3>${table(["trainer", "stake", "started #", "submitted #", "model"], task.trainers.map((t) => [
    accountLink(t.address), esc(amount(t.stake)), esc(t.startedBlock), esc(t.submittedBlock), `<span class="mono">${esc(t.modelCid)}</span>`]), "trainers")}
  <h3>Selected validators</h3>${table(["validator", "stake", "started #", "commit #", "reveal #"], task.validators.map((v) => [
    accountLink(v.address), esc(amount(v.stake)), esc(v.startedBlock), esc(v.commitBlock), esc(v.revealBlock)]), "validators")}
  <h3>Training curves</h3><div data-testid="curves">${curves}</div>
  <h3>Score matrix (revealed)</h3>${heat}
  <p>${esc(scores.scoreRule)}</p>
  <h3>Leaderboard and rewards</h3>${leaderboard}
  <h3>Validator rewards</h3>${table(["validator", "agreement", "reward"], board.validators.map((v) => [
    accountLink(v.address), esc(`${(v.agreementPpb / 1e7).toFixed(2)} %`), esc(amount(v.reward))]), "validator-rewards")}`;
}

async function accountsPage() {
  const roles = await rpc("arena_roles");
  const rows = Object.entries(roles).flatMap(([role, r]) => r.members.map((m) => [esc(role), accountLink(m.address), esc(amount(m.bonded)), m.live ? "live" : "–"]));
  return `<h2>Accounts</h2>
  <form id="lookup"><input name="address" placeholder="SS58 address or 0x public key" data-testid="address-input"> <button>Show</button></form>
  <h3>Staked roles</h3>${table(["role", "account", "bonded", "heartbeat"], rows, "roles")}`;
}

async function accountPage(address) {
  const [acct, stakes, history, escrow] = await Promise.all([rpc("arena_account", address), rpc("arena_stakes", address),
    rpc("arena_history", address), rpc("arena_escrow", address)]);
  const bonds = Object.entries(stakes.bonds).map(([role, a]) => [esc(role), esc(amount(a)), esc(amount(stakes.effectiveStake[role]))]);
  const hist = Object.values(history).filter((h) => h.tasksJoined || h.rewards || h.slashed).map((h) => [esc(h.role), esc(h.tasksJoined),
    esc(h.completed), esc(h.bestRank), esc(amount(h.rewards)), esc(amount(h.slashed)), esc(`${(h.reputationPpb / 1e7).toFixed(1)} %`)]);
  const recent = Object.values(history).flatMap((h) => h.recent.map((r) => [esc(h.role), `<a href="#/task/${r.taskId}">${r.taskId}</a>`,
    esc(r.rank), esc(r.consensusScore), esc(amount(r.reward))]));
  return `<h2>Account <span class="mono">${esc(acct.address)}</span></h2>
  <div class="cards">
    <div class="card">free<b data-testid="free">${esc(amount(acct.free))}</b></div>
    <div class="card">reserved<b>${esc(amount(acct.reserved))}</b></div>
    <div class="card">nonce<b>${esc(acct.nonce)}</b></div>
    <div class="card">escrow<b>${esc(amount(escrow.balance))}</b></div>
    <div class="card">delegated to it<b>${esc(amount(stakes.delegatedTo))}</b></div>
  </div>
  <h3>Stakes per role</h3>${table(["role", "bonded", "effective stake"], bonds, "stakes")}
  <h3>Delegations</h3>${table(["target", "amount"], stakes.delegations.map((d) => [accountLink(d.target), esc(amount(d.amount))]), "delegations")}
  <h3>History and reputation</h3>${table(["role", "tasks", "completed", "best rank", "rewards", "slashed", "reputation"], hist, "history")}
  <h3>Recent tasks</h3>${table(["role", "task", "rank", "consensus score", "reward"], recent, "recent")}`;
}

async function marketPage() {
  const [params, models] = await Promise.all([rpc("arena_marketParams"), rpc("arena_marketModels")]);
  const sections = await Promise.all(models.map(async (m) => {
    const periods = [params.currentPeriod, params.currentPeriod - 1].filter((p) => p >= 0);
    const usage = await Promise.all(periods.map((p) => rpc("arena_usage", m.modelCid, p)));
    const usageRows = usage.map((u) => [esc(u.period), esc(u.queries), esc(amount(u.revenue)),
      u.payouts.map((p) => `${esc(p.party)} ${accountLink(p.address)} ${esc(amount(p.amount))}`).join("<br>") || "–"]);
    return `<h3>Task <a href="#/task/${m.taskId}">${m.taskId}</a> · ${esc(m.kind)} · <span class="mono">${esc(m.modelCid)}</span></h3>
      <p>trainer ${accountLink(m.trainer)}</p>
      ${table(["host", "endpoint", "price per query", "registered #"], m.hosts.map((h) => [accountLink(h.address), `<span class="mono">${esc(h.endpoint)}</span>`,
        esc(amount(h.pricePerQuery)), esc(h.registeredBlock)]), "hosts")}
      ${table(["period", "queries", "revenue", "payouts"], usageRows, "usage")}`;
  }));
  const tryable = models.filter((m) => m.hosts.length);
  const options = tryable.map((m) => `<option value="${esc(m.taskId)}" data-kind="${esc(m.kind)}">task ${esc(m.taskId)} · ${esc(m.kind)} · ${esc(short(m.modelCid))}</option>`).join("");
  const tryForm = tryable.length ? `<h3>Try the model</h3>
  <form id="try" data-testid="try-form">
    <label>model <select name="task" data-testid="try-model">${options}</select></label><br>
    <label>input <textarea name="input" rows="3" cols="80" data-testid="try-input"></textarea></label>
    <p class="hint" data-testid="try-hint"></p>
    <button data-testid="try-submit">Ask (the node's dev key pays — dev chains only)</button>
  </form>
  <p>A paid query needs a voucher signed by the paying key, which a browser does not hold. With your own key:</p>
  <pre data-testid="try-command"></pre>
  <div data-testid="try-answer"></div>` : "";
  return `<h2>Marketplace</h2>
  ${tryForm}
  <p>period ${esc(params.currentPeriod)} (${esc(params.periodBlocks)} blocks) · usage emission ${esc(amount(params.usageEmissionPerPeriod))} per period ·
  shares ${esc(params.usageSharesPpb.map(([p, s]) => `${p} ${(s / 1e7).toFixed(0)} %`).join(", "))}</p>
  ${sections.join("") || "<p>No finalized task has a top model yet.</p>"}`;
}

const TEXT_KINDS = ["char_lm", "custom_text", "causal_lm_lora"];

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

function wireTryForm() {
  const form = document.getElementById("try");
  if (!form) return;
  const update = () => {
    const option = form.task.selectedOptions[0];
    const kind = option ? option.dataset.kind : "";
    document.querySelector("[data-testid=try-hint]").textContent = TEXT_KINDS.includes(kind)
      ? (kind === "causal_lm_lora" ? "a prompt (sent as one user chat message)" : "a prompt to complete")
      : "numbers: one row as 1,2,3 or a JSON list of rows [[...],[...]] (the task's input features)";
    const input = form.input.value.trim() || "...";
    document.querySelector("[data-testid=try-command]").textContent =
      `arena model query ${form.task.value} --input ${shellQuote(input)} --key YOUR_KEY`;
  };
  form.task.addEventListener("change", update);
  form.input.addEventListener("input", update);
  update();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = document.querySelector("[data-testid=try-answer]");
    out.textContent = "asking…";
    try {
      const r = await rpc("arena_tryModel", Number(form.task.value), form.input.value, 32);
      const answer = typeof r.output === "string" ? r.output
        : r.output.map((p) => JSON.stringify(p.label ?? p.value)).join(", ");
      out.innerHTML = `<p>answer <b data-testid="try-output">${esc(answer)}</b></p>
        <p>from ${accountLink(r.host)} at <span class="mono">${esc(r.endpoint)}</span> · cost <span data-testid="try-cost">${esc(amount(r.cost))}</span>
        paid by ${accountLink(r.payer)} (this node's dev key)</p><code>${esc(JSON.stringify(r.output))}</code>`;
    } catch (err) {
      out.innerHTML = `<p class="error" data-testid="try-error">${esc(err.message)}</p>`;
    }
  });
}

// ------------------------------------------------------------------ routing and live updates

const ROUTES = [
  [/^#\/block\/(.+)$/, blockPage], [/^#\/tasks$/, tasksPage], [/^#\/task\/(\d+)$/, taskPage],
  [/^#\/accounts$/, accountsPage], [/^#\/account\/(.+)$/, accountPage], [/^#\/market$/, marketPage],
];

let rendering = false;
let pending = false;

async function render() {
  if (rendering) { pending = true; return; }
  rendering = true;
  const hash = location.hash || "#/chain";
  const view = document.getElementById("view");
  try {
    let html = null;
    for (const [pattern, page] of ROUTES) {
      const m = hash.match(pattern);
      if (m) { html = await page(decodeURIComponent(m[1] ?? "")); break; }
    }
    view.innerHTML = html ?? await chainPage();
    view.querySelectorAll("[data-heat]").forEach((el) => { el.style.background = el.dataset.heat; });
    view.querySelectorAll("[data-width]").forEach((el) => { el.style.width = `${el.dataset.width}px`; });
    wireTryForm();
    const form = document.getElementById("lookup");
    if (form) form.addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/account/${form.address.value.trim()}`; });
    view.dataset.rendered = hash;
  } catch (err) {
    view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
  } finally {
    rendering = false;
    if (pending) { pending = false; render(); }
  }
}

function showHeads() {
  document.getElementById("heads").textContent = `best #${heads.best ?? "–"} · finalized #${heads.finalized ?? "–"}`;
}

function connectLive() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`);
  const live = document.getElementById("live");
  let lastRender = 0;
  ws.onopen = () => {
    live.textContent = "live"; live.className = "on";
    ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "chain_subscribeNewHeads", params: [] }));
    ws.send(JSON.stringify({ jsonrpc: "2.0", id: 2, method: "chain_subscribeFinalizedHeads", params: [] }));
  };
  ws.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (!data.params || !data.params.result) return;
    if (data.method === "chain_newHead") heads.best = data.params.result.number;
    if (data.method === "chain_finalizedHead") heads.finalized = data.params.result.number;
    showHeads();
    // pages that show chain data follow the head, at most every 2 s
    const now = Date.now();
    if (data.method === "chain_newHead" && now - lastRender > 2000 && !/^#\/(accounts|market)$/.test(location.hash)) {
      lastRender = now; render();
    }
  };
  ws.onclose = () => { live.textContent = "offline"; live.className = "off"; setTimeout(connectLive, 3000); };
}

async function start() {
  try { props = await rpc("system_properties"); } catch (err) { /* defaults stay */ }
  const health = await rpc("system_health").catch(() => null);
  if (health) { heads.best = health.best; heads.finalized = health.finalized; showHeads(); }
  window.addEventListener("hashchange", render);
  await render();
  connectLive();
}

start();
