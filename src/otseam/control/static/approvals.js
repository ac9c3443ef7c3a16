// The console's Requests and Audit pages: two-person commands and the hash-chained audit log.
// Loaded after app.js (api, esc, $, table, fmtTime, state, pages come from there).
//
// Signing happens here, in the browser, never on the node: the approver picks their key file (the PEM
// file `seam command keygen` wrote), the page reads it into memory, signs the exact message the node
// returned ("otseam command approval v1\n" + SHA-256 of the canonical document) with the browser's
// Web Crypto Ed25519, and posts only the fingerprint and the signature. The key file is never uploaded.
// Web Crypto needs a secure context: the console over HTTPS (or on loopback).
"use strict";

function b64(bytes) { return btoa(String.fromCharCode(...new Uint8Array(bytes))); }
function b64urlBytes(text) {
  const plain = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(plain + "===".slice((plain.length + 3) % 4)), (c) => c.charCodeAt(0));
}

async function signWithKeyFile(file, message) {
  if (!window.crypto || !crypto.subtle) throw new Error("this page is not in a secure context (use HTTPS): the browser cannot sign here");
  const pem = await file.text();
  if (!pem.includes("BEGIN PRIVATE KEY")) throw new Error("this is not an unencrypted PEM private key (the file seam command keygen wrote)");
  const der = Uint8Array.from(atob(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  let key;
  try {
    key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  } catch (error) {
    throw new Error("the key file is not an Ed25519 key this browser can use: " + error.message);
  }
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const fingerprint = "SHA256:" + b64(await crypto.subtle.digest("SHA-256", b64urlBytes(jwk.x))).replace(/=+$/, "");
  const signature = b64(await crypto.subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(message)));
  return { fingerprint, signature };
}

function can(session, permission) { return (session.permissions || []).includes(permission); }

function stateBadge(s) { return `<span class="badge state-${esc(s)}">${esc(s)}</span>`; }

function fmtMs(ms) { return ms ? fmtTime(ms / 1000) : ""; }

async function requestsPage(view, page) {
  const session = await api("GET", "/session");
  const mayRequest = can(session, "commands.request"), mayApprove = can(session, "commands.approve");
  view.innerHTML = `<h2>Requests and approvals</h2>
    <p class="muted">IT may ask, OT decides. A request is one canonical document; each approver signs its SHA-256 with their own
    key, in this browser, and the OT node checks every signature and the contract again before it writes, then reads the value back.</p>
    <div id="new-request"></div>
    <h3>Requests</h3>
    <label>State <select id="filter-state"><option value="">all</option>
      ${["pending", "approved", "executed", "rejected", "expired", "failed", "refused"].map((s) => `<option>${s}</option>`).join("")}</select></label>
    <div id="requests"></div>
    <h3>Contract proposals</h3><div id="proposals"></div>`;
  const commands = (await api("GET", "/commands")).items;
  if (mayRequest && commands.length) {
    $("new-request").innerHTML = `<h3>New request</h3>
      <form id="request-form" class="request-form">
        <label>Command <select id="rq-command">${commands.map((c) => `<option value="${esc(c.id)}">${esc(c.id)} (${esc(c.point)})</option>`).join("")}</select></label>
        <span id="rq-info" class="muted"></span><br>
        <label>Value seen now <input id="rq-observed" size="10" required></label>
        <label>New value <input id="rq-value" size="10" required></label>
        <label>Reason <input id="rq-reason" size="50" required></label>
        <button type="submit">Prepare request</button>
      </form>
      <div id="rq-prepared"></div>`;
    const info = () => {
      const c = commands.find((x) => x.id === $("rq-command").value);
      const live = state.values.get(c.point);
      const seen = live ? live.value : c.value;
      if (seen !== null && seen !== undefined && !$("rq-observed").dataset.touched) $("rq-observed").value = fmtValue(seen);
      const range = c.range ? `${c.range.low} to ${c.range.high}` : "any";
      $("rq-info").textContent = `range ${range} ${c.unit}; approvers: ${c.approvers.map((a) => `${a.side} ${a.role}`).join(" and ")}; ` +
        (seen === null || seen === undefined
          ? "this node has no value of the point yet: type the value you see."
          : `${live ? "live value" : "last value received " + fmtTime(c.value_ts)} ${fmtValue(seen)} ${c.unit}`);
    };
    $("rq-command").addEventListener("change", () => { delete $("rq-observed").dataset.touched; info(); });
    $("rq-observed").addEventListener("input", () => { $("rq-observed").dataset.touched = "1"; });
    info();
    page.onValues = () => info();
    $("request-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      $("rq-prepared").innerHTML = "";
      try {
        const prepared = await api("POST", "/commands/prepare", {
          command: $("rq-command").value, value: $("rq-value").value.trim(), observed: $("rq-observed").value.trim(), reason: $("rq-reason").value.trim(),
        });
        $("rq-prepared").innerHTML = `<div class="prepared"><p>The document to be submitted; approvers sign its SHA-256
          <code id="rq-digest">${esc(prepared.sha256)}</code>.</p><pre>${esc(JSON.stringify(prepared.document, null, 1))}</pre>
          <button type="button" id="rq-submit">Submit request</button></div>`;
        $("rq-submit").addEventListener("click", async () => {
          try {
            await api("POST", "/commands/requests", { document: prepared.document });
            $("rq-prepared").innerHTML = `<p class="ok" id="rq-done">Submitted: waiting for approvals.</p>`;
            draw();
          } catch (error) { $("rq-prepared").insertAdjacentHTML("beforeend", `<p class="error">${esc(error.message)}</p>`); }
        });
      } catch (error) { $("rq-prepared").innerHTML = `<p class="error" id="rq-error">${esc(error.message)}</p>`; }
    });
  } else if (!commands.length) {
    $("new-request").innerHTML = `<p class="muted">The contract declares no commands: nothing can be requested.</p>`;
  }

  // `unlessBusy`: a redraw gives way to a key file picked or a reason typed while its fetch was under
  // way (checked again once the answers are in, not only before asking), so nobody's pick is wiped.
  const draw = async (unlessBusy = false) => {
    const filter = $("filter-state").value;
    // Both lists fetched first, then drawn together: a page half redrawn would replace what someone is
    // doing in the other half.
    const [list, proposals] = await Promise.all([
      api("GET", `/commands/requests?limit=100${filter ? "&state=" + filter : ""}`), api("GET", "/contract/proposals"),
    ]);
    if (unlessBusy && busy()) return;
    $("requests").innerHTML = list.items.length
      ? list.items.map((r) => requestCard(r, session, mayRequest, mayApprove)).join("")
      : `<p class="muted">No requests${filter ? " in this state" : ""}.</p>`;
    const mayChange = can(session, "contract.change");
    $("proposals").innerHTML = `<p class="muted">Governance ${proposals.governance ? "on: seam run loads only a bundle its quorum signed" : "off"}.
      Propose a change with <code>seam contract propose</code> or <code>POST ${API}/contract/proposals</code>.</p>` +
      (proposals.items.length
        ? table(["Revision", "Status", "Proposer", "Changes", "Needs", "Approved by", ""], proposals.items.map((p) => {
            const signed = p.approvals.some((a) => a.person === session.person);
            const needed = Object.keys(p.required).includes(session.person);
            const action = p.status === "open" && mayChange && needed && !signed
              ? `<span class="proposal" data-message="${esc(p.signing.message)}"><input type="file" class="key-file" accept=".key,.pem">
                 <button type="button" data-approve-proposal="${esc(p.revision)}">Sign and approve</button><span class="error proposal-error"></span></span>`
              : "";
            return [
              `r${esc(p.revision)}`, esc(p.status), esc(p.proposer), esc(p.changes.join("; ")),
              esc(Object.entries(p.required).map(([who, why]) => `${who} (${why})`).join(", ")),
              esc(p.approvals.map((a) => a.person).join(", ")), action,
            ];
          }))
        : `<p class="muted">No proposals.</p>`);
  };
  // On #requests, which this page creates: #view outlives pages, a listener on it would be added again
  // on every visit and send each approval more than once.
  $("requests").addEventListener("click", async (e) => {
    const target = e.target;
    const id = target.dataset && (target.dataset.approve || target.dataset.reject);
    if (!id) return;
    const card = target.closest(".request");
    const out = card.querySelector(".request-error");
    out.textContent = "";
    try {
      if (target.dataset.approve) {
        const file = card.querySelector("input[type=file]").files[0];
        let body;
        if (file) body = await signWithKeyFile(file, card.dataset.message);
        else {
          body = { fingerprint: card.querySelector(".sig-fp").value.trim(), signature: card.querySelector(".sig-value").value.trim() };
          if (!body.fingerprint || !body.signature) throw new Error("choose your key file, or paste a fingerprint and a signature made with your key");
        }
        await api("POST", `/commands/requests/${encodeURIComponent(id)}/approve`, body);
      } else {
        const reason = card.querySelector(".reject-reason").value.trim();
        if (!reason) throw new Error("a rejection needs a reason");
        await api("POST", `/commands/requests/${encodeURIComponent(id)}/reject`, { reason });
      }
      // What this card held is spent; whatever else someone picked or typed meanwhile is kept.
      card.querySelectorAll("input").forEach((input) => { input.value = ""; });
      draw(true);
    } catch (error) { out.textContent = error.message; }
  });
  $("proposals").addEventListener("click", async (e) => {
    const revision = e.target.dataset && e.target.dataset.approveProposal;
    if (!revision) return;
    const box = e.target.closest(".proposal");
    const out = box.querySelector(".proposal-error");
    out.textContent = "";
    try {
      const file = box.querySelector("input[type=file]").files[0];
      if (!file) throw new Error("choose your key file: the page signs the bundle hash with it, the file stays here");
      await api("POST", `/contract/proposals/r${encodeURIComponent(revision)}/approve`, await signWithKeyFile(file, box.dataset.message));
      box.querySelectorAll("input").forEach((input) => { input.value = ""; });
      draw(true);
    } catch (error) { out.textContent = error.message; }
  });
  $("filter-state").addEventListener("change", () => draw());
  // Automatic refreshes never wipe a key file picked or a reason being typed.
  const busy = () => [...document.querySelectorAll("#requests input, #proposals input")].some((i) => (i.type === "file" ? i.files.length : i.value));
  // A refresh that fails (the node restarting) is retried by the next one; the stream's bar says it is down.
  const refresh = () => (busy() ? Promise.resolve() : draw(true).catch((error) => console.warn("not refreshed:", error.message)));
  page.onEvents = (events) => { if (events.some((e) => e.kind.startsWith("audit.command") || e.kind.startsWith("audit.contract"))) refresh(); };
  // Even the first drawing gives way: a page left behind (signed in again, the route taken twice)
  // can finish its fetch after the new page's person has picked a file.
  await draw(true);
  every(5000, refresh);  // expiry is a matter of time, not of events
}

function requestCard(r, session, mayRequest, mayApprove) {
  const d = r.document;
  const approvedBy = r.approvals.map((a) => `${esc(a.person)} <span class="muted">${esc(a.fingerprint)}</span>`).join(", ") || "none yet";
  const mine = d.requester === session.person;
  const signed = r.approvals.some((a) => a.person === session.person);
  const open = r.state === "pending" || r.state === "approved";
  let actions = "";
  if (r.state === "pending" && mayApprove && !mine && !signed) {
    actions += `<div class="approve-box"><label>Your key file <input type="file" class="key-file" accept=".key,.pem"></label>
      <button type="button" data-approve="${esc(d.id)}">Sign and approve</button>
      <details><summary>or paste a signature made elsewhere</summary>
        <p class="muted">Sign the message below with your Ed25519 key, e.g.
        <code>printf '%s' "$MESSAGE" &gt; msg; openssl pkeyutl -sign -rawin -inkey you.key -in msg | base64 -w0</code>, or run
        <code>seam command approve ${esc(d.id)} --as ${esc(session.person || "you")} --key you.key</code> on the node.</p>
        <label>Fingerprint <input class="sig-fp" size="50"></label> <label>Signature <input class="sig-value" size="60"></label></details></div>`;
  }
  if (open && mayRequest) {
    actions += `<div><input class="reject-reason" placeholder="reason" size="40"> <button type="button" data-reject="${esc(d.id)}">Reject</button></div>`;
  }
  const outcome = r.outcome
    ? `<p>OT node ${esc(r.outcome.node || "")}: <strong>${esc(r.outcome.status)}</strong> ${esc(r.outcome.detail || "")}
       ${r.outcome.readback !== undefined ? `read back ${esc(r.outcome.readback)}` : ""}</p>`
    : "";
  const rejection = r.rejection ? `<p>Rejected by ${esc(r.rejection.person)}: ${esc(r.rejection.reason)}</p>` : "";
  return `<div class="request" data-id="${esc(d.id)}" data-state="${esc(r.state)}" data-message="${esc(r.signing.message)}">
    <p><strong>${esc(d.command)}</strong> ${esc(d.point)} = <strong>${esc(d.value)} ${esc(d.unit)}</strong>
      (seen ${esc(d.observed)}) ${stateBadge(r.state)}</p>
    <p>Requested by ${esc(d.requester)} at ${esc(fmtMs(d.created))}: ${esc(d.reason)}. Approve by ${esc(fmtMs(d.approve_by))}, execute by ${esc(fmtMs(d.execute_by))}.</p>
    <p class="approvals">Approved by ${approvedBy}.${r.missing && r.state === "pending" ? ` <span class="muted">Still needed: ${esc(r.missing)}</span>` : ""}</p>
    ${rejection}${outcome}
    <details><summary>Document and SHA-256</summary><p>SHA-256 <code class="digest">${esc(r.sha256)}</code>; an approver signs the text
      <code>${esc(r.signing.message.replace("\n", "\\n"))}</code>.</p><pre>${esc(JSON.stringify(d, null, 1))}</pre></details>
    ${actions}<p class="error request-error" role="alert"></p></div>`;
}

async function auditPage(view, page) {
  view.innerHTML = `<h2>Audit</h2><p class="muted">The node's hash-chained audit log: every request, approval, rejection, execution and
    read-back, refused write, break-glass, proposal, sign-in and failed sign-in. Each record carries the hash of the one before;
    the node signs the head. Newest first.</p>
    <label>Kind <input id="audit-kind" placeholder="e.g. command. or login" size="20"></label>
    <div id="audit-verdict"></div><div id="audit"></div><button type="button" id="audit-older" hidden>Older</button>`;
  let before = null, older = false;
  const draw = async (more) => {
    older = more;
    const kind = $("audit-kind").value.trim();
    const query = `/audit?limit=100${kind ? "&kind=" + encodeURIComponent(kind) : ""}${more && before ? "&before=" + before : ""}`;
    const result = await api("GET", query);
    const v = result.verification;
    $("audit-verdict").innerHTML = v.ok
      ? `<p class="ok" id="audit-ok">Chain verified: ${esc(v.records)} records, ${esc(v.checkpoints)} signed checkpoints${v.signed_by ? `, head signed by ${esc(v.signed_by)}` : ""}.</p>`
      : `<p class="error" id="audit-tampered">TAMPERED: ${esc(v.problem)}</p>`;
    const rows = result.items.map((r) => [
      esc(r.seq), esc(fmtMs(r.ts)), esc(r.kind), esc(r.actor), esc(r.subject), esc(r.message), `<code title="${esc(r.hash)}">${esc(r.hash.slice(0, 12))}</code>`,
      `<code title="${esc(r.prev)}">${esc(r.prev.slice(0, 12))}</code>`,
    ]);
    const html = rows.length ? table(["#", "Time", "Kind", "Who", "Subject", "What", "Hash", "Previous"], rows, 'id="audit-table"') : `<p class="muted">No records.</p>`;
    if (more && before) $("audit").insertAdjacentHTML("beforeend", html); else $("audit").innerHTML = html;
    before = result.next;
    $("audit-older").hidden = !before;
  };
  $("audit-kind").addEventListener("change", () => { before = null; draw(false); });
  $("audit-older").addEventListener("click", () => draw(true));
  page.onEvents = (events) => {
    if (!older && events.some((e) => e.kind.startsWith("audit."))) draw(false).catch((error) => console.warn("not refreshed:", error.message));
  };
  await draw(false);
}

pages.requests = requestsPage;
pages.audit = auditPage;
