// Live Telemetry: polling, the panic button's modal, banners, the activity chart.
// The page works without this file (forms post to the server); this makes it live.
(function () {
  "use strict";

  const POLL_MS = 5000;
  const POLL_TRAINING_MS = 2000;
  const BANNER_MS = 5000;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (value) => String(value === null || value === undefined ? "" : value)
    .replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const fmtTime = (iso) => iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "";
  const fmtShort = (iso) => iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) : "";
  const ago = (iso) => {
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 90) return Math.round(s) + " seconds";
    if (s < 5400) return Math.round(s / 60) + " minutes";
    if (s < 172800) return Math.round(s / 3600) + " hours";
    return Math.round(s / 86400) + " days";
  };

  let state = JSON.parse($("#live-state").textContent);
  let paused = false;
  let timer = null;
  let busy = false; // a retrain request is in flight: the modal stays open

  // --- banners --------------------------------------------------------------------------
  function banner(kind, text, autoDismiss) {
    const el = document.createElement("div");
    el.className = "banner banner-" + kind;
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.innerHTML = "<span></span><button type='button' class='banner-close' aria-label='Dismiss'>×</button>";
    el.firstChild.textContent = text;
    el.lastChild.addEventListener("click", () => el.remove());
    $("#banners").appendChild(el);
    if (autoDismiss) setTimeout(() => el.remove(), BANNER_MS);
    return el;
  }
  // Messages the server rendered (after a form post without JavaScript) go away too.
  document.querySelectorAll("#banners .banner-success, #banners .banner-info:not([data-joined])").forEach((el) => setTimeout(() => el.remove(), BANNER_MS));

  // --- rendering --------------------------------------------------------------------------
  function render() {
    const s = state.summary;
    document.querySelectorAll("[data-field]").forEach((el) => {
      const v = s[el.dataset.field];
      el.textContent = typeof v === "number" ? v.toLocaleString("en-US") : v;
    });
    $("#open-anomalies-card").classList.toggle("card-alert", s.open_anomalies > 0); // red only when there is something
    $("#updated-at").textContent = new Date(state.now).toISOString().slice(11, 19);
    renderModel();
    renderTables();
    renderChart();
  }

  function renderModel() {
    const ax = state.axon;
    const m = ax.active_model;
    $("#model-line").innerHTML = m
      ? `Model <strong>v${m.version}</strong> active, trained ${ago(m.trained_at)} ago on ${m.records.toLocaleString("en-US")} records of ${m.processes} processes from ${m.hosts} hosts.`
      : "No model is active yet: snapshots are stored and will be scored once one is trained.";
    const err = $("#model-error");
    err.hidden = !ax.model_error;
    err.textContent = ax.model_error || "";
    $("#worker-line").hidden = ax.worker_alive;
    const run = ax.current_run;
    const box = $("#run-progress");
    box.hidden = !run;
    if (run) {
      $("#run-stage").textContent = `Run ${run.id}: ${run.stage || run.status} (${run.progress}%)`;
      const bar = box.querySelector(".progress");
      bar.setAttribute("aria-valuenow", run.progress);
      bar.querySelector(".bar").style.width = run.progress + "%";
    }
    $("#last-run").textContent = !run && ax.last_run ? "Last run: " + ax.last_run.message : "";
    // "Already in progress" is about a run: once no run is in flight, it is no longer true.
    if (!run) document.querySelectorAll("#banners [data-joined]").forEach((el) => el.remove());
    const button = $("#panic-button");
    if (button && state.can_retrain) {
      button.classList.toggle("is-training", !!run);
      button.setAttribute("aria-disabled", run ? "true" : "false");
      button.querySelector(".label").textContent = run ? `Training… ${run.progress}%` : "🚨 Retrain Model";
    }
    const est = $("#estimate");
    if (est) est.textContent = ax.estimate_seconds;
  }

  function rows(tbody, items, empty, cols, row) {
    const el = $(tbody);
    el.innerHTML = items.length ? items.map(row).join("") : `<tr><td colspan="${cols}" class="muted">${empty}</td></tr>`;
  }

  function renderTables() {
    rows("#snapshots-body", state.summary.recent_snapshots, "No snapshots yet.", 4, (s) =>
      `<tr><td>${esc(s.hostname)}${s.names_only ? ' <span class="tag" title="This agent sends process names only: detection rests on how rare each name is.">names only</span>' : ""}</td><td>${fmtTime(s.timestamp)}</td><td class="num">${s.process_count}</td>` +
      `<td class="num${s.anomaly_count ? " bad" : ""}">${s.scored ? s.anomaly_count : "unscored"}</td></tr>`);
    // The server renders these tables (the same templates as the first load); keep what the person selected.
    if (state.fragments) { // absent on the first load: the page already holds them
      const selected = new Set(Array.from(document.querySelectorAll("#alerts-body input[name=key]:checked")).map((b) => b.value));
      $("#alerts-body").innerHTML = state.fragments.alerts;
      document.querySelectorAll("#alerts-body input[name=key]").forEach((b) => { b.checked = selected.has(b.value); });
      $("#runs-body").innerHTML = state.fragments.runs;
      const approvals = $("#approvals-body");
      if (approvals) approvals.innerHTML = state.fragments.approvals;
    }
    const token = csrf();
    rows("#versions-body", state.versions, "No model trained yet.", 6, (v) =>
      `<tr><td>v${v.version}</td><td>${fmtShort(v.trained_at)}</td><td class="num">${v.records}</td><td class="num">${v.hosts}</td>` +
      `<td><span class="status status-${esc(v.status)}" title="${esc(v.gate_reason)}">${esc(v.status)}</span></td>` +
      `<td>${state.can_activate && !v.is_active ? `<form method="post" action="/live-telemetry/models/${v.version}/activate/" class="inline activate-form">` +
        `<input type="hidden" name="csrfmiddlewaretoken" value="${esc(token)}"><button type="submit" class="btn-small" data-version="${v.version}">Activate</button></form>` : ""}</td></tr>`);
  }

  function renderChart() {
    const data = state.activity;
    const w = 600, h = 160, pad = 24;
    // Each series on its own scale: a few hundred anomalies must not flatten the snapshot bars.
    const maxSnap = Math.max(1, ...data.map((d) => d.snapshots));
    const maxAnom = Math.max(1, ...data.map((d) => d.anomalies));
    const bw = (w - pad) / data.length;
    const y = (v, max) => h - pad - (v / max) * (h - 2 * pad);
    let bars = "";
    data.forEach((d, i) => {
      const x = pad + i * bw;
      const ys = y(d.snapshots, maxSnap), ya = y(d.anomalies, maxAnom);
      bars += `<rect class="snap" x="${x + 1}" y="${ys}" width="${bw / 2 - 1}" height="${h - pad - ys}"><title>${fmtShort(d.hour)}: ${d.snapshots} snapshots</title></rect>`;
      bars += `<rect class="anom" x="${x + bw / 2}" y="${ya}" width="${bw / 2 - 1}" height="${h - pad - ya}"><title>${fmtShort(d.hour)}: ${d.anomalies} anomalies</title></rect>`;
      if (i % 6 === 0) bars += `<text x="${x}" y="${h - 6}">${new Date(d.hour).toISOString().slice(11, 16)}</text>`;
    });
    $("#activity-chart").innerHTML =
      `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none"><text x="0" y="12">max ${maxSnap} snapshots / ${maxAnom} anomalies per hour</text>` +
      `<line x1="${pad}" y1="${h - pad}" x2="${w}" y2="${h - pad}"/>${bars}</svg>`;
  }

  // --- polling ----------------------------------------------------------------------------
  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(poll, state.axon.current_run ? POLL_TRAINING_MS : POLL_MS);
  }

  async function poll() {
    const wasRunning = state.axon.current_run;
    try {
      const response = await fetch("/live-telemetry/data/", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("the server answered " + response.status);
      state = await response.json();
      $("#poll-error").hidden = true;
      render();
      if (wasRunning && !state.axon.current_run && state.axon.last_run && state.axon.last_run.id === wasRunning.id) {
        const done = state.axon.last_run;
        banner(done.status === "succeeded" ? "success" : "error", done.message, done.status === "succeeded");
      }
    } catch (err) {
      const notice = $("#poll-error");
      notice.hidden = false;
      notice.textContent = `Live updates failed at ${new Date().toLocaleTimeString()} (${err.message}); showing the last data and retrying.`;
    }
    schedule();
  }

  $("#poll-toggle").addEventListener("click", (ev) => {
    paused = !paused;
    ev.target.textContent = paused ? "Resume" : "Pause";
    ev.target.setAttribute("aria-pressed", paused ? "true" : "false");
    $("#poll-status").firstChild.textContent = paused ? "Paused · updated " : "Live · updated ";
    if (paused) clearTimeout(timer); else poll();
  });

  function csrf() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function api(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = { detail: `The server answered ${response.status} without details.` }; }
    return { response, data };
  }

  // --- the modal --------------------------------------------------------------------------
  const modal = $("#panic-modal");
  if (modal) {
    const form = $("#panic-form");
    const confirm = $("#panic-confirm");
    let opener = null;
    modal.classList.add("js-managed"); // from here on .open, not :target, says whether it shows

    const focusables = () => Array.from(modal.querySelectorAll("a[href]:not([tabindex='-1']), button, input, [tabindex]:not([tabindex='-1'])"))
      .filter((el) => !el.disabled && el.offsetParent !== null);

    function open(ev) {
      ev.preventDefault();
      if (state.axon.current_run) {
        // Stays while that run goes on; removed when it ends (renderModel).
        document.querySelectorAll("#banners [data-joined]").forEach((el) => el.remove());
        banner("info", `A retrain is already in progress (run ${state.axon.current_run.id}, ${state.axon.current_run.progress}%).`, false)
          .dataset.joined = "1";
        return;
      }
      opener = document.activeElement;
      hideRiskConfirm();
      modal.classList.add("open");
      document.body.classList.add("modal-open");
      loadPreview();
      setTimeout(() => $("#panic-cancel").focus(), 0);
    }

    function close() {
      if (busy) return;
      modal.classList.remove("open");
      document.body.classList.remove("modal-open");
      if (location.hash === "#panic-modal") history.replaceState(null, "", location.pathname + location.search);
      if (opener) opener.focus();
    }

    async function loadPreview() {
      const list = $("#learn-list");
      delete list.dataset.loaded;
      try {
        // The same template as the page's first load renders the list: one renderer.
        const response = await fetch(list.dataset.url, { credentials: "same-origin" });
        if (!response.ok) return; // the server-rendered list stays
        const html = await response.text();
        // What the person already changed while the list was loading stays as they left it.
        const touched = new Map(Array.from(list.querySelectorAll("input[name=approve][data-touched]"))
          .map((b) => [b.value, { checked: b.checked, confirmed: b.dataset.confirmed }]));
        const pendingKey = pending ? pending.value : null;
        list.innerHTML = html;
        list.querySelectorAll("input[name=approve]").forEach((b) => {
          const was = touched.get(b.value);
          if (!was) return;
          b.checked = was.checked;
          b.dataset.touched = "1";
          if (was.confirmed) b.dataset.confirmed = was.confirmed;
        });
        pending = pendingKey && Array.from(list.querySelectorAll("input[name=approve]")).find((b) => b.value === pendingKey);
        if (!pending) hideRiskConfirm();
        updateLabel();
      } catch (e) { /* keep what the server rendered */ }
      list.dataset.loaded = "1";
    }

    // What the button will do, counted in programs (a program may run on several hosts or under several parents).
    function updateLabel() {
      const programs = new Set(Array.from(form.querySelectorAll("input[name=approve]:checked")).map((b) => b.dataset.program));
      if (!busy) confirm.querySelector(".label").textContent = programs.size
        ? `Retrain and learn ${programs.size} program${programs.size === 1 ? "" : "s"}` : "Retrain, learn nothing new";
    }

    // Ticking a high-risk item takes a second, explicit yes that names why it is risky.
    let pending = null;
    function hideRiskConfirm() { pending = null; $("#risk-confirm").hidden = true; }
    form.addEventListener("change", (ev) => {
      const box = ev.target;
      if (box.name !== "approve") return;
      box.dataset.touched = "1";
      if (box.checked && box.dataset.risk === "high" && box.dataset.confirmed !== "1") {
        box.checked = false;
        pending = box;
        $("#risk-confirm-text").textContent =
          `${box.dataset.name} is high risk: ${box.dataset.reasons}. Learn it as normal anyway? It will stop being flagged.`;
        $("#risk-confirm").hidden = false;
        $("#risk-confirm-no").focus();
      } else if (!box.checked) {
        delete box.dataset.confirmed;
      }
      updateLabel();
    });
    $("#risk-confirm-yes").addEventListener("click", () => {
      if (pending) { pending.dataset.confirmed = "1"; pending.checked = true; pending.focus(); }
      hideRiskConfirm();
      updateLabel();
    });
    $("#risk-confirm-no").addEventListener("click", () => { const box = pending; hideRiskConfirm(); if (box) box.focus(); });

    $("#panic-button").addEventListener("click", open);
    if (location.hash === "#panic-modal") open(new Event("click"));
    window.addEventListener("hashchange", () => { if (location.hash === "#panic-modal" && !modal.classList.contains("open")) open(new Event("click")); });
    modal.querySelectorAll("[data-close]").forEach((el) => el.addEventListener("click", (ev) => { ev.preventDefault(); close(); }));
    // On the document, not the modal: a key pressed before focus has moved inside still counts.
    document.addEventListener("keydown", (ev) => {
      if (!modal.classList.contains("open")) return;
      if (ev.key === "Escape") { ev.preventDefault(); close(); return; }
      if (ev.key !== "Tab") return;
      const items = focusables();
      if (!items.length) return;
      const first = items[0], last = items[items.length - 1];
      if (!modal.contains(document.activeElement)) { ev.preventDefault(); (ev.shiftKey ? last : first).focus(); }
      else if (ev.shiftKey && document.activeElement === first) { ev.preventDefault(); last.focus(); }
      else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (busy) return;
      busy = true;
      confirm.disabled = true;
      confirm.classList.add("is-training");
      confirm.querySelector(".label").textContent = "Retraining...";
      // Exactly the keys ticked: nothing flagged after the list was loaded, nothing it did not show.
      const approve = Array.from(form.querySelectorAll("input[name=approve]:checked")).map((b) => b.value);
      const reason = $("#panic-reason").value.trim();
      let result;
      try {
        result = await api("/api/axon/retrain", { reason, approve });
      } catch (err) {
        result = { response: { ok: false, status: 0 }, data: { detail: "The server could not be reached: " + err.message } };
      }
      busy = false;
      confirm.disabled = false;
      confirm.classList.remove("is-training");
      updateLabel();
      close();
      if (result.response.ok && result.data.status === "training_started") {
        banner("success", "Retraining initiated. " + result.data.message, true);
      } else if (result.response.ok) {
        banner("info", result.data.message, false).dataset.joined = "1";
      } else {
        banner("error", result.data.detail || `The server answered ${result.response.status}.`, false);
      }
      poll();
    });
  }

  // --- activate (roll back) -------------------------------------------------------------------
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest(".activate-form");
    if (!form) return;
    ev.preventDefault();
    const version = form.querySelector("button").dataset.version;
    const { response, data } = await api(`/api/axon/models/${version}/activate/`);
    if (response.ok) banner("success", `Model v${version} is now active.`, true);
    else banner("error", data.detail || `The server answered ${response.status}.`, false);
    poll();
  });

  render();
  schedule();
})();
