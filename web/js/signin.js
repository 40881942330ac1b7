// The sign-in page: exchange a token for a session cookie (POST /api/session, the token in the
// body, never in a URL), then go where the reader was going. The server answers a dashboard
// page with this page (401) when there is no session, so after signing in a reload of the same
// URL shows what was asked for; on /signin itself, `?next=` says where to go.

const form = document.getElementById("signin");
const input = document.getElementById("token");
const error = document.getElementById("signin-error");

function destination() {
  if (location.pathname !== "/signin") return location.pathname + location.search + location.hash;
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this server: never "//other.site" or "https://...".
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const token = input.value.trim();
  if (!token) return;
  const button = document.getElementById("signin-submit");
  button.disabled = true;
  try {
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
      credentials: "same-origin",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      error.textContent = (body && body.message) || `Sign-in failed (HTTP ${response.status})`;
      error.hidden = false;
      return;
    }
    input.value = "";
    location.replace(destination());
  } catch (problem) {
    error.textContent = `Cannot reach the server: ${problem.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

window.__logstream = { signin: true };
input.focus();
