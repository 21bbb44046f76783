// The supervisor dashboard page: filters, figures, lists, charts; re-reads on every change.
"use strict";

(() => {
  const M = Minyi;
  const { t, el, pct, fixed, dateTime } = M;
  if (!M.token()) {
    M.toSignIn();
    return;
  }

  const $ = (id) => document.getElementById(id);
  let last = null; // the latest overview
  let optionsFilled = false;

  // ------------------------------------------------------------ filters (kept in the URL)
  function filterQuery() {
    const q = {};
    for (const k of ["from", "to", "street", "unit", "category"]) {
      const input = $("f-" + k);
      // Dates the page filled in itself follow the server's default range (it moves at
      // midnight); only dates the user chose are sent.
      if (input.value && !input.dataset.auto) q[k] = input.value;
    }
    return q;
  }

  function readUrlFilters() {
    for (const k of ["from", "to", "street", "unit", "category"]) {
      const v = M.params.get(k);
      if (v) $("f-" + k).value = v;
      $("f-" + k).dataset.want = v || "";
    }
  }

  function writeUrlFilters() {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(Object.assign({ from: "", to: "", street: "", unit: "", category: "" }, filterQuery()))) {
      if (v) q.set(k, v);
      else q.delete(k);
    }
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }

  function fillOptions(o) {
    if (optionsFilled) return;
    optionsFilled = true;
    const fill = (id, items) => {
      const s = $(id);
      const want = s.dataset.want || s.value;
      for (const it of items) s.append(el("option", { value: it.code }, it.name));
      s.value = want;
    };
    fill("f-street", o.options.streets);
    fill("f-unit", o.options.units);
    fill("f-category", o.options.categories.map((c) => ({ code: c, name: c })));
  }

  // ------------------------------------------------------------ rendering
  function card(key, value, sub, opts) {
    const o = opts || {};
    return el("div", { class: "card" + (o.big ? " big" : ""), "data-figure": key, "data-value": o.raw === undefined ? "" : o.raw, title: o.formula ? t("formula_" + key) : null }, [
      el("div", { class: "card-label" }, t(key)),
      el("div", { class: "card-value" }, value),
      el("div", { class: "card-sub" }, sub || ""),
    ]);
  }

  function rateCard(key, r) {
    return card(key, pct(r.value), r.denominator ? `${r.numerator} / ${r.denominator}` : t("none"), { raw: r.value === null ? "" : r.value, formula: true });
  }

  function meanCard(key, m, unit, digits) {
    return card(key, m.value === null ? "—" : fixed(m.value, digits) + " " + t(unit), `${t("sample")} ${m.count}`, { raw: m.value === null ? "" : m.value, formula: true });
  }

  function renderCards(o) {
    const v = o.volume;
    $("volume").replaceChildren(
      card("today", String(v.today), "", { raw: v.today, big: true }),
      card("this_week", String(v.this_week), "", { raw: v.this_week, big: true }),
      card("this_month", String(v.this_month), "", { raw: v.this_month, big: true }),
      card("in_range", String(v.in_range), `${o.filter.from} – ${o.filter.to}`, { raw: v.in_range, big: true }),
      card("open", String(o.figures.open), `${t("overdue_count")} ${o.figures.overdue}`, { raw: o.figures.open, big: true }),
    );
    const f = o.figures;
    $("figures").replaceChildren(
      rateCard("first_dispatch_accuracy", f.first_dispatch_accuracy),
      meanCard("avg_dispatch_hours", f.avg_dispatch_hours, "hours", 2),
      meanCard("avg_accept_hours", f.avg_accept_hours, "hours", 2),
      rateCard("on_time_completion", f.on_time_completion),
      meanCard("avg_completion_working_days", f.avg_completion_working_days, "working_days", 2),
      rateCard("response_rate", f.response_rate),
      rateCard("resolution_rate", f.resolution_rate),
      rateCard("satisfaction_rate", f.satisfaction_rate),
    );
  }

  function renderTrend(o) {
    const labels = o.trend.map((p) => p.date.slice(5));
    $("trend-volume").replaceChildren(
      M.lineChart(labels, [
        { key: "received", name: t("received"), values: o.trend.map((p) => p.received) },
        { key: "dispatched", name: t("dispatched"), values: o.trend.map((p) => p.dispatched) },
        { key: "completed", name: t("completed"), values: o.trend.map((p) => p.completed) },
      ], { title: t("trend_volume") }),
    );
    $("trend-rates").replaceChildren(
      M.lineChart(labels, [
        { key: "first_dispatch_accuracy", name: t("first_dispatch_accuracy"), values: o.trend.map((p) => p.first_dispatch_accuracy) },
        { key: "on_time_completion", name: t("on_time_completion"), values: o.trend.map((p) => p.on_time_completion) },
      ], { percent: true, title: t("trend_rates") }),
    );
  }

  function ticketTable(rows) {
    return M.table([
      ["tracking_number", "tracking_number", null, "mono"],
      ["excerpt", "excerpt", null, "wide"],
      ["category", "category"],
      ["street_name", "street", null, "nowrap"],
      ["lead_unit_name", "lead_unit"],
      ["state", "state", (r) => M.stateName(r.state), "nowrap"],
      ["clock", "clock", (r) => t("clock_" + r.clock), "nowrap"],
      ["due", "due", (r) => dateTime(r.due), "mono"],
      [
        "overdue_working_hours",
        "over_by",
        (r) =>
          r.overdue_working_hours >= 0
            ? `${fixed(r.overdue_working_hours, 1)} ${t("hours")}`
            : `${t("left")} ${fixed(-r.overdue_working_hours, 1)} ${t("hours")}`,
        "num",
      ],
      ["used", "used", (r) => (isFinite(r.used) ? pct(r.used, 0) : "—"), "num"],
      ["supervised", "supervised", (r) => (r.supervised ? "●" : "")],
    ], rows);
  }

  function arbitrationTable(rows, outcomes) {
    const cols = [
      ["tracking_number", "tracking_number", null, "mono"],
      ["excerpt", "excerpt", null, "wide"],
      ["street_name", "street", null, "nowrap"],
      ["returns", "returns", null, "num"],
    ];
    if (outcomes) {
      cols.push(["owner_unit_name", "owner_unit"], ["ruling", "ruling"], ["arbitrated_at", "arbitrated_at", (r) => dateTime(r.arbitrated_at), "mono"]);
    } else {
      cols.push(["source", "state", (r) => t("src_" + r.source), "nowrap"], ["reason", "reason"], ["escalated_at", "escalated_at", (r) => dateTime(r.escalated_at), "mono"]);
    }
    return M.table(cols, rows);
  }

  function leagueTable(rows) {
    return M.table([
      ["rank", "rank", null, "num"],
      ["unit_name", "unit"],
      ["led", "led", null, "num"],
      ["returns", "returns", null, "num"],
      ["late", "late", null, "num"],
      ["extensions", "extensions", null, "num"],
      ["dissatisfied", "dissatisfied", null, "num"],
      ["problems", "problems", null, "num strong"],
      ["on_time_completion", "on_time_completion", (r) => pct(r.on_time_completion.value), "num"],
      ["satisfaction_rate", "satisfaction_rate", (r) => pct(r.satisfaction_rate.value), "num"],
    ], rows);
  }

  function breakdown(id, rows, empty) {
    const named = rows.map((r) => Object.assign({}, r, { name: r.name || t(empty) }));
    $(id + "-chart").replaceChildren(M.barChart(named.slice(0, 8).map((r) => ({ label: r.name, value: r.received }))));
    $(id).replaceChildren(M.table([
      ["name", "name"],
      ["received", "received", null, "num"],
      ["dispatched", "dispatched", null, "num"],
      ["first_dispatch_accuracy", "first_dispatch_accuracy", (r) => pct(r.first_dispatch_accuracy.value), "num"],
      ["on_time_completion", "on_time_completion", (r) => pct(r.on_time_completion.value), "num"],
      ["satisfaction_rate", "satisfaction_rate", (r) => pct(r.satisfaction_rate.value), "num"],
      ["overdue", "overdue_count", null, "num"],
    ], named, { compact: true }));
  }

  const openHotspots = new Set();

  function renderHotspots(o) {
    const box = $("hotspots");
    if (!o.hotspots.length) {
      box.replaceChildren(el("p", { class: "muted" }, t("none")));
      return;
    }
    box.replaceChildren(...o.hotspots.map((h) => {
      const key = h.community + "|" + h.first_at;
      const tickets = M.table([
        ["tracking_number", "tracking_number", null, "mono"],
        ["excerpt", "excerpt", null, "wide"],
        ["received_at", "period", (r) => dateTime(r.received_at), "mono"],
        ["status", "state", (r) => M.stateName(r.status)],
        ["lead_unit_name", "lead_unit"],
      ], h.tickets, { compact: true });
      const details = el("details", { class: "hotspot", "data-community": h.community, open: openHotspots.has(key) ? "" : null }, [
        el("summary", {}, [
          el("span", { class: "rank" }, "#" + h.rank),
          el("span", { class: "size", "data-size": h.size }, `${h.size} ${t("size")}`),
          el("strong", {}, `${h.street_name} · ${h.community_name}`),
          el("span", { class: "muted" }, `${h.category} · ${dateTime(h.first_at)} – ${dateTime(h.last_at)}`),
          el("span", { class: "label" }, h.label),
        ]),
        tickets,
      ]);
      details.addEventListener("toggle", () => (details.open ? openHotspots.add(key) : openHotspots.delete(key)));
      return details;
    }));
  }

  function render(o) {
    last = o;
    fillOptions(o);
    for (const [k, v] of [["from", o.filter.from], ["to", o.filter.to]]) {
      const input = $("f-" + k);
      if (!input.value || input.dataset.auto) {
        input.value = v;
        input.dataset.auto = "1";
      }
    }
    $("loading").hidden = o.ready;
    renderCards(o);
    renderTrend(o);
    $("overdue").replaceChildren(ticketTable(o.overdue));
    $("at-risk").replaceChildren(ticketTable(o.at_risk));
    $("arbitration-queue").replaceChildren(arbitrationTable(o.arbitration.queue, false));
    $("arbitration-outcomes").replaceChildren(arbitrationTable(o.arbitration.outcomes, true));
    $("league").replaceChildren(leagueTable(o.league));
    breakdown("by-category", o.breakdowns.category, "uncategorised");
    breakdown("by-street", o.breakdowns.street, "unresolved");
    breakdown("by-unit", o.breakdowns.unit, "undispatched");
    renderHotspots(o);
    $("updated").textContent = `${t("updated")} ${dateTime(o.generated_at)}`;
    $("updated").dataset.version = o.version;
    document.body.dataset.version = o.version;
    document.body.dataset.ready = o.ready;
  }

  // ------------------------------------------------------------ loading
  function showError(e) {
    if (e instanceof M.ApiError && (e.status === 401 || e.status === 403)) {
      if (M.tokenFromUrl()) {
        $("error").textContent = e.message;
      } else {
        M.toSignIn(e.message);
      }
      return;
    }
    const fields = e.body && e.body.error && e.body.error.fields;
    $("error").textContent = fields ? fields.map((f) => `${f.field}: ${f.description}`).join("; ") : e.message;
  }

  const refresh = M.refresher(async () => {
    try {
      const o = await M.apiJson("/api/v1/dashboard/overview", filterQuery());
      $("error").textContent = "";
      render(o);
    } catch (e) {
      showError(e);
    }
  });

  function setLive(on) {
    const live = $("live");
    live.className = "live " + (on ? "on" : "off");
    live.dataset.state = on ? "on" : "off";
    $("live-text").dataset.i18n = on ? "live" : "offline";
    $("live-text").textContent = t(on ? "live" : "offline");
  }

  // ------------------------------------------------------------ wiring
  readUrlFilters();
  M.setLang(M.lang());
  $("lang").addEventListener("click", () => {
    M.setLang(M.lang() === "zh" ? "en" : "zh");
    if (last) render(last);
    setLive($("live").dataset.state === "on");
  });
  $("signout").addEventListener("click", M.signOut);
  for (const k of ["from", "to"]) $("f-" + k).addEventListener("change", (ev) => delete ev.target.dataset.auto);
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    writeUrlFilters();
    refresh();
  });
  $("f-reset").addEventListener("click", () => {
    for (const k of ["from", "to", "street", "unit", "category"]) {
      $("f-" + k).value = "";
      delete $("f-" + k).dataset.auto;
    }
    writeUrlFilters();
    refresh();
  });
  document.querySelectorAll("button.csv").forEach((b) =>
    b.addEventListener("click", () => M.downloadCsv(b.dataset.table, filterQuery()).catch(showError)),
  );
  if (M.tokenFromUrl()) {
    $("to-wall").href = "/dashboard/wall?token=" + encodeURIComponent(M.token());
    $("signout").hidden = true;
  }
  refresh();
  M.live(refresh, setLive);
  // Figures depend on the time (overdue, at risk): re-read every minute even when quiet.
  setInterval(refresh, 60000);
})();
