// Checks, in the auditor's own browser, that the record on this page is in the log that the
// log's key signed: nothing here trusts the gateway's word that it is.
//
//  1. the leaf bytes (RFC 8785 JSON of the record and its seq) are the record shown:
//     each field in the table equals the leaf's field, and the leaf's seq is this record's;
//  2. leaf hash = SHA-256(0x00 || leaf), and the inclusion proof folds it with
//     SHA-256(0x01 || left || right) up to a root (RFC 9162 2.1.3.2);
//  3. the checkpoint is a C2SP signed note whose Ed25519 signature, by the log's key
//     (key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)), verifies over its
//     text, and its body names this log, the proof's tree size and that same root.
// WebCrypto does the hashing and the signature check (Ed25519 is in Chromium's WebCrypto).
// The key is the one pinned on this machine if there is one, else the one served.
(function () {
  "use strict";
  const PIN = "facegate.console.pinnedVerifierKey";
  const status = document.getElementById("verify-status");
  const steps = document.getElementById("verify-steps");
  const enc = new TextEncoder();

  function step(text, ok) {
    const li = document.createElement("li");
    li.textContent = (ok ? "✓ " : "✗ ") + text;
    if (!ok) li.className = "fail";
    steps.appendChild(li);
    if (!ok) throw new Error(text);
  }
  function b64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
  const leafHash = (leaf) => sha256(concat(new Uint8Array([0]), leaf));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

  // RFC 9162 2.1.3.2, as gateway/audit/merkle.py verify_inclusion.
  async function rootFromInclusion(leaf, index, size, proof) {
    if (!(index >= 0 && index < size)) throw new Error("leaf index outside the tree");
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
      if (sn === 0) throw new Error("the proof is too long");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("the proof is too short");
    return r;
  }

  async function parseVerifierKey(text) {
    // name+keyid+base64, split at the first two "+" only: standard base64 holds "+" too.
    const parts = text.trim().split("+");
    if (parts.length < 3) throw new Error("the key does not read name+keyid+base64");
    const [name, idHex] = parts;
    const encoded = parts.slice(2).join("+");
    const raw = b64(encoded);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 note key");
    const pub = raw.slice(1);
    const id = (await sha256(concat(enc.encode(name + "\n"), new Uint8Array([1]), pub))).slice(0, 4);
    if (hex(id) !== idHex) throw new Error("the key id does not match the key");
    return { name, id, key: await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]) };
  }

  // c2sp.org/signed-note: text, a blank line, signature lines "— <name> <base64(id||sig)>".
  async function openNote(note, verifier) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) throw new Error("not a signed note");
    const text = note.slice(0, split + 1);
    for (const line of note.slice(split + 2).split("\n").filter((l) => l)) {
      if (!line.startsWith("\u2014 ")) throw new Error("a signature line does not start with '— '");
      const [name, encoded] = line.slice(2).split(" ");
      const raw = b64(encoded);
      if (name !== verifier.name || !equal(raw.slice(0, 4), verifier.id)) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, verifier.key, raw.slice(4), enc.encode(text));
      if (!ok) throw new Error("the signature by " + name + " does not verify");
      return text;
    }
    throw new Error("no signature by the log's key");
  }

  function canonical(value) {  // key order and number spelling no longer matter
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  async function check() {
    const seq = Number(status.dataset.seq);
    if (!window.crypto || !crypto.subtle) {
      throw new Error("this browser offers no WebCrypto here (the console must be served over HTTPS)");
    }
    const answer = await fetch(status.dataset.proofUrl, { credentials: "same-origin", cache: "no-store" });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || "the proof could not be fetched");

    const leafBytes = enc.encode(body.leaf);
    const record = JSON.parse(body.leaf);
    step("the leaf is record " + seq, record.seq === seq);
    const rows = document.querySelectorAll("#record-fields tr[data-field]");
    let shown = 0;
    for (const row of rows) {
      const name = row.dataset.field;
      if (canonical(JSON.parse(row.dataset.value)) !== canonical(record[name])) {
        step("the field " + name + " shown is the one the log holds", false);
      }
      shown++;
    }
    const fieldsInLeaf = Object.keys(record).filter((k) => k !== "seq").length;
    step("all " + shown + " fields shown are the ones the log holds", shown === fieldsInLeaf);

    const leaf = await leafHash(leafBytes);
    step("leaf hash " + hex(leaf).slice(0, 16) + "… computed here", equal(leaf, b64(body.proof.leaf_hash)));
    const root = await rootFromInclusion(
      leaf, body.proof.leaf_index, body.proof.tree_size, body.proof.hashes.map(b64)
    );
    step("root " + hex(root).slice(0, 16) + "… computed here from the leaf and the proof's " + body.proof.hashes.length + " hashes", true);

    const pinned = localStorage.getItem(PIN);
    const verifier = await parseVerifierKey(pinned || body.public_key);
    step("log key " + verifier.name + " (" + hex(verifier.id) + ")" + (pinned ? ", pinned on this machine" : ", as served by the gateway"), true);
    const text = await openNote(body.checkpoint, verifier);
    step("the checkpoint's Ed25519 signature verifies", true);
    const [origin, size, rootB64] = text.split("\n");
    step("the checkpoint is for log " + origin, origin === verifier.name);
    step("the checkpoint signs tree size " + size, Number(size) === body.proof.tree_size);
    step("the signed root is the root computed here", equal(b64(rootB64), root));
  }

  function pinControls() {
    const input = document.getElementById("pinned-key");
    input.value = localStorage.getItem(PIN) || "";
    document.getElementById("pin-key").addEventListener("click", () => {
      localStorage.setItem(PIN, input.value.trim()); location.reload();
    });
    document.getElementById("unpin-key").addEventListener("click", () => {
      localStorage.removeItem(PIN); location.reload();
    });
  }

  pinControls();
  check().then(
    () => { status.className = "verified"; status.textContent = "Verified in this browser: record " + status.dataset.seq + " is in the signed log."; },
    (error) => {
      status.className = "failed";
      status.textContent = "FAILED: " + error.message;
      const li = document.createElement("li");
      li.className = "fail"; li.textContent = error.message;
      if (!steps.lastChild || steps.lastChild.textContent.indexOf(error.message) < 0) steps.appendChild(li);
    }
  );
})();
