// Sign-in: checks a pasted token against the API, keeps it in localStorage, goes back.
"use strict";

(() => {
  const M = Minyi;
  const $ = (id) => document.getElementById(id);
  M.setLang(M.lang());
  const why = M.params.get("why");
  if (why) $("error").textContent = M.t("signin_failed") + why;
  $("lang").addEventListener("click", () => M.setLang(M.lang() === "zh" ? "en" : "zh"));
  $("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
    const res = await fetch("/api/v1/dashboard/whoami", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!res.ok) {
      let message = "HTTP " + res.status;
      try {
        message = (await res.json()).error.message;
      } catch (_) {
        /* not JSON */
      }
      $("error").textContent = M.t("signin_failed") + message;
      return;
    }
    M.saveToken(token);
    const next = M.params.get("next");
    // Only a path on this site: never an address elsewhere.
    location.href = next && next.startsWith("/dashboard") && !next.startsWith("//") ? next : "/dashboard";
  });
})();
