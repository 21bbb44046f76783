// The 大屏 layout for the command-centre wall: big figures, trends, what is late and hot.
// Refreshes by itself on every event (and every 30 s, for the clock-driven figures).
"use strict";

(() => {
  const M = Minyi;
  const { t, el, pct, fixed, dateTime } = M;
  if (!M.token()) {
    M.toSignIn();
    return;
  }
  const $ = (id) => document.getElementById(id);
  let last = null;

  function kpi(key, value, sub, raw) {
    return el("div", { class: "kpi", "data-figure": key, "data-value": raw === null || raw === undefined ? "" : raw }, [
      el("div", { class: "kpi-value" }, value),
      el("div", { class: "kpi-label" }, t(key)),
      el("div", { class: "kpi-sub" }, sub || ""),
    ]);
  }

  function render(o) {
    last = o;
    const f = o.figures;
    const rate = (key, r) => kpi(key, pct(r.value), r.denominator ? `${r.numerator} / ${r.denominator}` : "", r.value);
    const mean = (key, m, unit) => kpi(key, m.value === null ? "—" : fixed(m.value, 2), t(unit), m.value);
    $("kpis").replaceChildren(
      kpi("today", String(o.volume.today), "", o.volume.today),
      kpi("this_week", String(o.volume.this_week), "", o.volume.this_week),
      kpi("this_month", String(o.volume.this_month), "", o.volume.this_month),
      rate("first_dispatch_accuracy", f.first_dispatch_accuracy),
      mean("avg_dispatch_hours", f.avg_dispatch_hours, "hours"),
      rate("on_time_completion", f.on_time_completion),
      mean("avg_completion_working_days", f.avg_completion_working_days, "working_days"),
      rate("response_rate", f.response_rate),
      rate("resolution_rate", f.resolution_rate),
      rate("satisfaction_rate", f.satisfaction_rate),
    );
    const labels = o.trend.map((p) => p.date.slice(5));
    $("trend-volume").replaceChildren(M.lineChart(labels, [
      { key: "received", name: t("received"), values: o.trend.map((p) => p.received) },
      { key: "dispatched", name: t("dispatched"), values: o.trend.map((p) => p.dispatched) },
      { key: "completed", name: t("completed"), values: o.trend.map((p) => p.completed) },
    ], { dark: true, width: 900, height: 240 }));
    $("trend-rates").replaceChildren(M.lineChart(labels, [
      { key: "first_dispatch_accuracy", name: t("first_dispatch_accuracy"), values: o.trend.map((p) => p.first_dispatch_accuracy) },
      { key: "on_time_completion", name: t("on_time_completion"), values: o.trend.map((p) => p.on_time_completion) },
    ], { percent: true, dark: true, width: 900, height: 240 }));
    $("overdue-count").textContent = String(o.overdue.length);
    $("overdue").replaceChildren(...(o.overdue.length ? o.overdue.slice(0, 8).map((r) =>
      el("div", { class: "ticker-row" }, [
        el("span", { class: "mono" }, r.tracking_number),
        el("span", { class: "grow" }, r.excerpt),
        el("span", {}, r.lead_unit_name),
        el("span", { class: "hot" }, `+${fixed(r.overdue_working_hours, 1)}${t("hours")}`),
      ])) : [el("p", { class: "muted" }, t("none"))]));
    $("hotspots").replaceChildren(...(o.hotspots.length ? o.hotspots.slice(0, 5).map((h) =>
      el("div", { class: "ticker-row" }, [
        el("span", { class: "rank" }, "#" + h.rank),
        el("strong", {}, `${h.street_name} · ${h.community_name}`),
        el("span", { class: "grow" }, h.label),
        el("span", { class: "hot" }, `${h.size}`),
      ])) : [el("p", { class: "muted" }, t("none"))]));
    $("league").replaceChildren(M.table([
      ["rank", "rank", null, "num"],
      ["unit_name", "unit"],
      ["returns", "returns", null, "num"],
      ["late", "late", null, "num"],
      ["extensions", "extensions", null, "num"],
      ["dissatisfied", "dissatisfied", null, "num"],
    ], o.league.slice(0, 6), { compact: true }));
    $("streets").replaceChildren(M.barChart(o.breakdowns.street.slice(0, 8).map((r) => ({ label: r.name || t("unresolved"), value: r.received })), { dark: true, width: 380 }));
    $("updated").textContent = `${t("updated")} ${dateTime(o.generated_at)}`;
    document.body.dataset.version = o.version;
  }

  const refresh = M.refresher(async () => {
    try {
      render(await M.apiJson("/api/v1/dashboard/overview"));
      $("error").textContent = "";
    } catch (e) {
      if (e instanceof M.ApiError && (e.status === 401 || e.status === 403) && !M.tokenFromUrl()) {
        M.toSignIn(e.message);
        return;
      }
      $("error").textContent = e.message;
    }
  });

  function setLive(on) {
    $("live").className = "live " + (on ? "on" : "off");
    $("live").dataset.state = on ? "on" : "off";
    $("live-text").dataset.i18n = on ? "live" : "offline";
    $("live-text").textContent = t(on ? "live" : "offline");
  }

  function tick() {
    $("clock").textContent = new Intl.DateTimeFormat(M.lang() === "zh" ? "zh-CN" : "en-GB", {
      timeZone: "Asia/Shanghai",
      dateStyle: "medium",
      timeStyle: "medium",
    }).format(new Date());
  }

  M.setLang(M.lang());
  $("lang").addEventListener("click", () => {
    M.setLang(M.lang() === "zh" ? "en" : "zh");
    if (last) render(last);
  });
  $("fullscreen").addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else document.documentElement.requestFullscreen().catch(() => {});
  });
  tick();
  setInterval(tick, 1000);
  refresh();
  M.live(refresh, setLive);
  setInterval(refresh, 30000);
})();
