// The console's Break-glass page: one OT person writes a declared command without the second approval,
// for when the normal path is down. Loaded after app.js and approvals.js (api, esc, $, table, fmtTime,
// every, pages, can, fmtMs, signWithKeyFile come from there).
//
// What the node demands, the page only asks for: a reason, a duration of at most an hour, the person's
// own key file (the page signs the session document with it in the browser, as approvals are signed; the
// file is never uploaded). Opening raises a high-severity alert; the session stays an open review until
// the seam owner closes it with a note and their own signature. Everything is in the audit log first.
"use strict";

async function breakGlassPage(view, page) {
  const session = await api("GET", "/session");
  const mayOpen = can(session, "breakglass"), mayReview = can(session, "breakglass.review");
  view.innerHTML = `<h2>Break-glass</h2>
    <p class="muted">For when the two-person path is down and the plant needs a change now: one person of the OT side, on the OT
    node, with a reason, for a limited time. Opening a session raises a high-severity alert; every write is read before and read
    back; the seam owner must review the session afterwards. Everything is in the audit log first.</p>
    <div id="bg-open"></div><h3>Sessions</h3><div id="bg-sessions"></div>`;
  const commands = (await api("GET", "/commands")).items;
  let listed = await api("GET", "/breakglass");
  if (!listed.available) {
    $("bg-open").innerHTML = `<p class="muted" id="bg-unavailable">Node ${esc(listed.node)} is not in an OT zone: break-glass runs on the OT node only.</p>`;
  } else if (mayOpen && session.side === "ot") {
    $("bg-open").innerHTML = `<form id="bg-form" class="request-form breakglass-form">
        <label>Reason (mandatory) <input id="bg-reason" size="50" required></label>
        <label>For <select id="bg-duration">${[5, 15, 30, 60].map((m) => `<option value="${m * 60}"${m === 15 ? " selected" : ""}>${m} min</option>`).join("")}</select></label>
        <label>Your key file <input type="file" id="bg-key" accept=".key,.pem"></label>
        <button type="submit" class="danger">Open break-glass</button>
        <p class="error" id="bg-error" role="alert"></p></form>`;
    $("bg-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("bg-error").textContent = "";
      try {
        const file = $("bg-key").files[0];
        if (!file) throw new Error("choose your key file: the page signs the session with it, the file stays here");
        const prepared = await api("POST", "/breakglass/prepare", { reason: $("bg-reason").value.trim(), duration_s: Number($("bg-duration").value) });
        await api("POST", "/breakglass", { session: prepared.session, ...(await signWithKeyFile(file, prepared.signing.message)) });
        $("bg-form").reset();  // the key file is not kept picked for the next session
        await draw();
      } catch (error) { $("bg-error").textContent = error.message; }
    });
  }

  const writeForm = (s) => `<form class="bg-write request-form" data-session="${esc(s.session.id)}">
      <label>Command <select class="bg-command">${commands.map((c) => `<option value="${esc(c.id)}">${esc(c.id)} (${esc(c.point)})</option>`).join("")}</select></label>
      <label>Value seen now <input class="bg-observed" size="10" required></label>
      <label>New value <input class="bg-value" size="10" required></label>
      <button type="submit">Write</button> <span class="bg-outcome"></span></form>`;
  const reviewForm = (s) => `<form class="bg-review request-form" data-session="${esc(s.session.id)}" data-message="${esc(s.signing.message)}">
      <label>Review note <input class="bg-note" size="40" required></label>
      <label>Your key file <input type="file" class="key-file" accept=".key,.pem"></label>
      <button type="submit">Sign and close the review</button></form>`;
  const card = (s) => {
    const b = s.session;
    const mine = b.person === session.person;
    const writes = s.executions.map((o) => `${esc(o.command)}: <strong>${esc(o.status)}</strong> ${esc(o.detail || "")}`).join("<br>") || "none";
    const review = s.review
      ? `<p>Reviewed by ${esc(s.review.person)} at ${esc(fmtMs(s.review.at))}: ${esc(s.review.note)}</p>`
      : `<p class="error">Review open: the seam owner must close it.</p>${mayReview ? reviewForm(s) : ""}`;
    return `<div class="request breakglass ${s.active ? "active" : ""}" data-id="${esc(b.id)}" data-active="${s.active}" data-reviewed="${Boolean(s.review)}">
      <p><strong>${s.active ? "ACTIVE" : s.review ? "closed" : "expired"}</strong> session ${esc(b.id)} of ${esc(b.person)} on ${esc(b.node || "this node")},
        ${esc(fmtMs(b.opened))} to ${esc(fmtMs(b.expires))}: ${esc(b.reason)}</p>
      <p class="bg-writes">Writes: ${writes}</p>
      ${s.active && mine ? writeForm(s) : ""}${review}<p class="error request-error" role="alert"></p></div>`;
  };
  // Automatic refreshes never wipe a key file picked or a value being typed. The value seen now is filled
  // in by the page from the live values: it counts only once the person has changed it, or the card of
  // an active session would never be redrawn (not when it expires, not when another write is made).
  const typed = (i) => i.value && (!i.classList.contains("bg-observed") || i.dataset.touched);
  const busy = () => [...document.querySelectorAll("#bg-sessions input")].some((i) => (i.type === "file" ? i.files.length : typed(i)));
  const observedNow = (form) => {
    const c = commands.find((x) => x.id === form.querySelector(".bg-command").value);
    const live = c && state.values.get(c.point);
    const seen = live ? live.value : c && c.value;
    const input = form.querySelector(".bg-observed");
    if (seen !== null && seen !== undefined && !input.dataset.touched) input.value = fmtValue(seen);
  };
  // `unlessBusy`: an automatic redraw gives way to a value typed or a key file picked while its fetch was
  // under way (checked again once the answer is in, not only before asking): replacing the form then
  // emptied the new value, and the browser refused the write the person then sent as incomplete.
  const draw = async (unlessBusy = false) => {
    const fresh = await api("GET", "/breakglass");
    if (unlessBusy && busy()) return;
    listed = fresh;
    $("bg-sessions").innerHTML = listed.items.length ? listed.items.map(card).join("") : `<p class="muted">No break-glass sessions on this node.</p>`;
    for (const form of document.querySelectorAll(".bg-write")) observedNow(form);
  };
  $("bg-sessions").addEventListener("input", (e) => { if (e.target.classList.contains("bg-observed")) e.target.dataset.touched = "1"; });
  $("bg-sessions").addEventListener("change", (e) => { if (e.target.classList.contains("bg-command")) observedNow(e.target.closest("form")); });
  $("bg-sessions").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target, id = form.dataset.session;
    const out = form.closest(".request").querySelector(".request-error");
    out.textContent = "";
    try {
      if (form.classList.contains("bg-write")) {
        const outcome = await api("POST", `/breakglass/${encodeURIComponent(id)}/execute`, {
          command: form.querySelector(".bg-command").value, value: form.querySelector(".bg-value").value.trim(),
          observed: form.querySelector(".bg-observed").value.trim(),
        });
        form.querySelector(".bg-value").value = "";
        if (outcome.status !== "executed") out.textContent = `${outcome.status}: ${outcome.detail}`;
      } else {
        const file = form.querySelector("input[type=file]").files[0];
        if (!file) throw new Error("choose your key file: the page signs the session document with it, the file stays here");
        await api("POST", `/breakglass/${encodeURIComponent(id)}/review`, { note: form.querySelector(".bg-note").value.trim(), ...(await signWithKeyFile(file, form.dataset.message)) });
      }
      await draw();
    } catch (error) { out.textContent = error.message; }
  });
  page.onValues = () => { for (const form of document.querySelectorAll(".bg-write")) observedNow(form); };
  page.onEvents = (events) => { if (!busy() && events.some((e) => e.kind.startsWith("audit.breakglass") || e.kind.startsWith("audit.command"))) draw(true).catch(() => {}); };
  await draw(true);
  every(5000, () => (busy() ? undefined : draw(true)));  // a session ends with time, not with an event
}

pages.breakglass = breakGlassPage;
