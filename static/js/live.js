// Live Telemetry: polling, swapping the parts in, banners.
// The page works without this file (forms post to the server); this makes it live. The server renders
// every part of the page; the poll brings those parts rendered again, and this swaps them in by id.
// A panel's own script (axon's panic button) uses window.VoltaxeLive and listens for "voltaxe:polled".
(function () {
  "use strict";

  const POLL_MS = 5000;
  const POLL_HIDDEN_MS = 60000; // a tab nobody looks at need not load the server
  const BANNER_MS = 5000;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const controls = $("#live-controls");

  let paused = false;
  let timer = null;
  const shown = new Map(); // element id -> the HTML last swapped into it

  // --- banners --------------------------------------------------------------------------
  function banner(kind, text, autoDismiss) {
    const el = document.createElement("div");
    el.className = "banner banner-" + kind;
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.innerHTML = "<span></span><button type='button' class='banner-close' aria-label='Dismiss'>×</button>";
    el.firstChild.textContent = text;
    $("#banners").appendChild(el);
    if (autoDismiss) setTimeout(() => el.remove(), BANNER_MS);
    return el;
  }
  // Every banner closes, the server's too (without the script their x reloads the page, which shows them once).
  document.addEventListener("click", (ev) => {
    const close = ev.target.closest("#banners .banner-close");
    if (!close) return;
    ev.preventDefault();
    close.closest(".banner").remove();
  });
  // Messages the server rendered (after a form post without JavaScript) go away too.
  document.querySelectorAll("#banners .banner-success, #banners .banner-info:not([data-joined])").forEach((el) => setTimeout(() => el.remove(), BANNER_MS));

  // --- swapping the server's fragments in ------------------------------------------------------
  // Where the focus was, found again in the new HTML: by id, by name and value, or by its form.
  function selectorOf(node) {
    if (node.id) return "#" + CSS.escape(node.id);
    if (node.name) return `[name="${CSS.escape(node.name)}"][value="${CSS.escape(node.value)}"]`;
    if (node.form) return `form[action="${CSS.escape(node.form.getAttribute("action"))}"] ${node.tagName}`;
    return null;
  }

  function swap(el, html) {
    // Unchanged parts are left alone (a selection or a hover survives); CSRF tokens are masked afresh
    // on every render, so they do not count as a change.
    const key = html.replace(/name="csrfmiddlewaretoken" value="[^"]*"/g, "");
    if (shown.get(el.id) === key) return;
    shown.set(el.id, key);
    const ticked = new Set(Array.from(el.querySelectorAll("input[type=checkbox]:checked"), (b) => b.value));
    const focus = el.contains(document.activeElement) ? selectorOf(document.activeElement) : null;
    el.innerHTML = html;
    el.querySelectorAll("input[type=checkbox]").forEach((b) => { b.checked = ticked.has(b.value); });
    const again = focus && $(focus, el);
    if (again) again.focus();
  }

  // --- polling ----------------------------------------------------------------------------
  function schedule() {
    clearTimeout(timer);
    if (paused) return;
    // A part that shows work in progress (a training run) asks for a faster poll with data-poll-ms.
    const fast = $("[data-poll-ms]");
    timer = setTimeout(poll, document.visibilityState === "hidden" ? POLL_HIDDEN_MS : fast ? Number(fast.dataset.pollMs) : POLL_MS);
  }

  async function poll() {
    try {
      const response = await fetch(controls.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (signedOutBy(response)) return signedOut();
      if (!response.ok) throw new Error("the server answered " + response.status);
      const { fragments } = await response.json();
      Object.entries(fragments).forEach(([id, html]) => { const el = document.getElementById(id); if (el) swap(el, html); });
      $("#poll-error").hidden = true;
      document.dispatchEvent(new CustomEvent("voltaxe:polled"));
    } catch (err) {
      const notice = $("#poll-error");
      notice.hidden = false;
      notice.textContent = `Live updates failed at ${new Date().toLocaleTimeString()} (${err.message}); showing the last data and retrying.`;
    }
    schedule();
  }

  // An expired session answers with the login page (a redirect) or a 401: stop, and say so plainly.
  function signedOutBy(response) {
    return response.status === 401 || (response.redirected && new URL(response.url).pathname.startsWith("/login"));
  }
  function signedOut() {
    paused = true;
    clearTimeout(timer);
    const status = $("#poll-status");
    status.innerHTML = "<strong>Signed out:</strong> <a href=''>sign in again</a>";
    $("a", status).href = "/login/?next=" + encodeURIComponent(location.pathname + location.search);
    $("#poll-toggle").hidden = true;
    $("#poll-error").hidden = true;
  }

  $("#poll-toggle").addEventListener("click", (ev) => {
    paused = !paused;
    ev.target.textContent = paused ? "Resume" : "Pause";
    ev.target.setAttribute("aria-pressed", paused ? "true" : "false");
    $("#poll-status").firstChild.textContent = paused ? "Paused · updated " : "Live · updated ";
    if (paused) clearTimeout(timer); else poll();
  });
  // Hidden, the page polls seldom; seen again, it catches up at once.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !paused) poll(); else schedule();
  });

  window.VoltaxeLive = { banner, poll, signedOutBy, signedOut };
  controls.hidden = false;
  schedule();
})();
