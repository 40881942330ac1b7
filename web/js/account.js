// Who is signed in (GET /api/session), shown in the top bar with a "Sign out" button, and the
// "signed out" notice both pages show when a session ends while they are open.

import { el } from "./common.js";

/** Where the sign-in page should send the reader back to. */
export function signInUrl() {
  return `/signin?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
}

/** Put "name (role) · Sign out" into the top bar when this server needs tokens. */
export async function showAccount() {
  let who;
  try {
    const response = await fetch("/api/session", { headers: { Accept: "application/json" } });
    who = await response.json();
  } catch (_) {
    return;
  }
  if (!who || who.auth !== "tokens" || !who.signed_in) return;
  const bar = document.querySelector(".topbar");
  const button = el("button", { class: "btn account-out", type: "button", id: "sign-out" }, "Sign out");
  button.addEventListener("click", async () => {
    try {
      await fetch("/api/session", { method: "DELETE", headers: { Accept: "application/json" } });
    } finally {
      location.assign("/signin");
    }
  });
  bar.append(el("span", { class: "account", id: "account" },
    el("span", { class: "account-name" }, who.name), el("span", { class: "account-role" }, who.role), button));
}

/** The page's notice that the session ended: a sign-in link, nothing retried. */
export function signedOutNotice() {
  return [
    el("strong", {}, "Signed out"),
    " — your session ended or its token was revoked. ",
    el("a", { href: signInUrl(), id: "sign-in-again" }, "Sign in again"),
  ];
}
