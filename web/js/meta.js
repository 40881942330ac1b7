// A job's `meta` (whatever its runner sent: branch, commit, author, ...) as DOM, for the job page
// and the job list. Known keys get their own look; the rest show as key=value. Values are only
// ever text (textContent), and only an http(s) `url` becomes a link.

import { el } from "./common.js";

const KNOWN = [
  ["branch", ["branch", "ref"]],
  ["commit", ["commit", "sha", "revision"]],
  ["author", ["author", "user"]],
  ["pipeline", ["pipeline"]],
  ["url", ["url", "link"]],
];
const MAX_VALUE = 200;

function text(value) {
  const s = typeof value === "string" ? value : JSON.stringify(value);
  return s.length > MAX_VALUE ? `${s.slice(0, MAX_VALUE - 1)}…` : s;
}

function safeUrl(value) {
  if (typeof value !== "string" || !/^https?:\/\//i.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url : null;
  } catch (_) {
    return null;
  }
}

/** [{key, kind, value}] in display order: known keys first, then the rest by name. */
export function metaEntries(meta) {
  if (!meta || typeof meta !== "object" || Array.isArray(meta)) return [];
  const out = [];
  const used = new Set();
  for (const [kind, keys] of KNOWN) {
    const key = keys.find((k) => Object.hasOwn(meta, k) && meta[k] !== null && meta[k] !== "");
    if (key === undefined) continue;
    used.add(key);
    out.push({ key, kind, value: meta[key] });
  }
  for (const key of Object.keys(meta).sort()) {
    if (!used.has(key) && meta[key] !== null) out.push({ key, kind: "other", value: meta[key] });
  }
  return out;
}

/** One entry as an element of class meta-<kind>. */
export function metaNode({ key, kind, value }) {
  const attrs = { class: `meta-item meta-${kind}`, "data-key": key };
  if (kind === "commit") {
    const full = text(value);
    const short = /^[0-9a-f]{12,}$/i.test(full) ? full.slice(0, 10) : full;
    return el("span", { ...attrs, title: `commit ${full}` },
      el("span", { class: "meta-label" }, "commit "), el("code", {}, short));
  }
  if (kind === "url") {
    const url = safeUrl(value);
    if (!url) return el("span", attrs, el("span", { class: "meta-label" }, `${key}=`), text(value));
    const label = `${url.host}${url.pathname.length > 1 ? url.pathname : ""}`;
    return el("span", attrs, el("a", {
      href: url.href, target: "_blank", rel: "noopener noreferrer nofollow", title: url.href,
    }, label.length > 60 ? `${label.slice(0, 59)}…` : label));
  }
  if (kind === "other") {
    return el("span", attrs, el("span", { class: "meta-label" }, `${text(key)}=`), text(value));
  }
  return el("span", attrs, el("span", { class: "meta-label" }, `${kind} `), text(value));
}

/** All of a job's meta as a list element (empty list for no meta). */
export function metaList(meta, { limit = Infinity } = {}) {
  const entries = metaEntries(meta);
  const list = el("span", { class: "meta-list" });
  for (const entry of entries.slice(0, limit)) list.append(metaNode(entry));
  if (entries.length > limit) list.append(el("span", { class: "meta-more" }, `+${entries.length - limit}`));
  return list;
}
