// The model's part of the Live page (axon's panel): the panic button's modal, the confirmations of changes that
// take effect at once (activate, revoke), and what a run's end says. Telemetry's live.js polls the page and swaps
// its parts in; this plugs into it through window.VoltaxeLive and the "voltaxe:polled" event. Deferred like
// live.js but earlier in the page, so it starts once both have run (before DOMContentLoaded).
document.addEventListener("DOMContentLoaded", () => {
  "use strict";

  const { banner, poll, signedOutBy, signedOut } = window.VoltaxeLive;
  const $ = (sel, root) => (root || document).querySelector(sel);
  let busy = false; // a retrain request is in flight: the modal stays open

  // The run in flight, as the server's training banner shows it.
  const currentRun = () => { const el = $("#run-progress"); return el && { id: el.dataset.run, progress: el.dataset.progress }; };

  // --- a run's end --------------------------------------------------------------------------
  let seen = currentRun();
  document.addEventListener("voltaxe:polled", () => {
    const was = seen;
    seen = currentRun();
    if (seen) return;
    // "Already in progress" is about a run: once no run is in flight, it is no longer true.
    document.querySelectorAll("#banners [data-joined]").forEach((el) => el.remove());
    const last = $("#last-run");
    if (was && last && last.dataset.run === was.id) {
      const ok = last.dataset.status === "succeeded";
      banner(ok ? "success" : "error", $(".message", last).textContent, ok);
    }
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
    let coolUntil = 0; // after a refused press: the button waits until then (see coolDown)
    modal.classList.add("js-managed"); // from here on .open, not :target, says whether it shows

    const focusables = () => Array.from(modal.querySelectorAll("a[href]:not([tabindex='-1']), button, input, [tabindex]:not([tabindex='-1'])"))
      .filter((el) => !el.disabled && el.offsetParent !== null);

    function open(ev) {
      ev.preventDefault();
      if (Date.now() < coolUntil) return; // the banner counts down the wait
      const run = currentRun();
      if (run) {
        // Stays while that run goes on; removed when it ends (poll).
        document.querySelectorAll("#banners [data-joined]").forEach((el) => el.remove());
        banner("info", `A retrain is already in progress (run ${run.id}, ${run.progress}%).`, false).dataset.joined = "1";
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
      // A poll may have swapped the button for a new one since: focus the one on the page.
      const back = opener && (opener.id ? document.getElementById(opener.id) : opener);
      if (back) back.focus();
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
          if (was.confirmed) { b.dataset.confirmed = was.confirmed; setConfirmed(b, true); }
        });
        filterHosts();
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

    // Ticking a high-risk item takes a second, explicit yes that names why it is risky. The dialog
    // is that step here; without the script the row's own "Yes, I checked why" box is (the server
    // refuses a high-risk key that comes without it, whichever door it comes through).
    form.classList.add("scripted");
    let pending = null;
    function setConfirmed(box, yes) {
      const c = form.querySelector(`input[name=confirm_high_risk][value="${box.value}"]`);
      if (c) c.checked = yes;
    }
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
        setConfirmed(box, false);
      }
      updateLabel();
    });
    $("#risk-confirm-yes").addEventListener("click", () => {
      if (pending) { pending.dataset.confirmed = "1"; pending.checked = true; setConfirmed(pending, true); pending.focus(); }
      hideRiskConfirm();
      updateLabel();
    });
    $("#risk-confirm-no").addEventListener("click", () => { const box = pending; hideRiskConfirm(); if (box) box.focus(); });

    // Select all / none (never a high-risk item: each takes its own yes) and a host filter.
    const tools = $("#learn-tools");
    tools.hidden = false;
    function visibleBoxes() {
      return Array.from(form.querySelectorAll("#learn-list .candidate:not([hidden]) input[name=approve]"));
    }
    tools.addEventListener("click", (ev) => {
      const which = ev.target.dataset && ev.target.dataset.tick;
      if (!which) return;
      visibleBoxes().forEach((b) => {
        if (which === "none") { b.checked = false; delete b.dataset.confirmed; setConfirmed(b, false); }
        else if (b.dataset.risk !== "high") b.checked = true;
        b.dataset.touched = "1";
      });
      updateLabel();
    });
    function filterHosts() {
      const want = $("#learn-host").value.trim().toLowerCase();
      form.querySelectorAll("#learn-list .candidate").forEach((row) => {
        row.hidden = Boolean(want) && !row.dataset.host.toLowerCase().includes(want);
      });
      form.querySelectorAll("#learn-list .program").forEach((p) => {
        p.hidden = !p.querySelector(".candidate:not([hidden])");
      });
    }
    $("#learn-host").addEventListener("input", filterHosts);

    // On the document: the button is part of the training banner, which polls replace.
    document.addEventListener("click", (ev) => { if (ev.target.closest("#panic-button")) open(ev); });
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
      const confirmHighRisk = Array.from(form.querySelectorAll("input[name=confirm_high_risk]:checked")).map((b) => b.value)
        .filter((k) => approve.includes(k));
      const reason = $("#panic-reason").value.trim();
      let result;
      try {
        result = await api(form.dataset.api, { reason, approve, confirm_high_risk: confirmHighRisk });
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
      } else if (signedOutBy(result.response)) {
        signedOut();
        banner("error", "Signed out: sign in again, then press again. Nothing was started.", false);
        return;
      } else if (result.response.status === 429 && result.data.retry_after) {
        coolDown(banner("error", result.data.detail, false), Number(result.data.retry_after));
      } else {
        banner("error", result.data.detail || `The server answered ${result.response.status}.`, false);
      }
      poll();
    });

    // A refused press says how long to wait, counts it down, and the button waits with it.
    function coolDown(el, seconds) {
      coolUntil = Date.now() + seconds * 1000;
      const text = el.firstChild;
      const base = text.textContent.replace(/\s*Try again in \d+ seconds?\.?/, "");
      const tick = () => {
        const left = Math.ceil((coolUntil - Date.now()) / 1000);
        const button = $("#panic-button");
        if (left <= 0) {
          text.textContent = base + " You can press again now.";
          if (button) { button.removeAttribute("aria-disabled"); button.classList.remove("is-cooling"); }
          return;
        }
        text.textContent = `${base} Try again in ${left} second${left === 1 ? "" : "s"}.`;
        if (button) { button.setAttribute("aria-disabled", "true"); button.classList.add("is-cooling"); }
        setTimeout(tick, 1000);
      };
      tick();
    }
  }

  // --- changes that take effect at once ask first, saying what will change ------------------
  // Capturing, so that it runs before the activate handler below; without the script the server asks.
  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form[data-confirm]");
    if (!form) return;
    if (!window.confirm(form.dataset.confirm)) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      return;
    }
    if (!form.querySelector("input[name=confirmed]")) {
      form.insertAdjacentHTML("beforeend", "<input type='hidden' name='confirmed' value='yes'>");
    }
  }, true);

  // --- activate (roll back) -------------------------------------------------------------------
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest(".activate-form");
    if (!form) return;
    ev.preventDefault();
    const version = form.dataset.version;
    const { response, data } = await api(form.dataset.api);
    if (response.ok) banner("success", `Model v${version} is now active.`, true);
    else banner("error", data.detail || `The server answered ${response.status}.`, false);
    poll();
  });
});
