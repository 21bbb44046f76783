// Minyi dashboard: shared by the page, the wall and the sign-in page.
// No external resources: everything the page needs is served by Minyi itself.
"use strict";

const Minyi = (() => {
  const TOKEN_KEY = "minyi.dashboard.token";
  const LANG_KEY = "minyi.dashboard.lang";
  const params = new URLSearchParams(location.search);

  // ---------------------------------------------------------------- i18n
  const TEXT = {
    zh: {
      title: "民意速办 · 监管驾驶舱",
      wall_title: "民意速办 · 指挥中心大屏",
      signin_title: "登录监管驾驶舱",
      signin_hint: "粘贴监管员（supervisor）或管理员（admin）令牌。令牌保存在本浏览器中。",
      signin_token: "访问令牌",
      signin_submit: "登录",
      signin_failed: "登录失败：",
      signout: "退出",
      wall: "大屏",
      page: "驾驶舱",
      live: "实时",
      offline: "连接中断，正在重连…",
      loading: "正在加载读模型…",
      updated: "更新于",
      from: "开始日期",
      to: "结束日期",
      street: "街道",
      unit: "单位",
      category: "类别",
      all: "全部",
      apply: "查询",
      reset: "重置",
      csv: "导出 CSV",
      today: "今日受理",
      this_week: "本周受理",
      this_month: "本月受理",
      in_range: "时段受理",
      first_dispatch_accuracy: "一次分拨准确率",
      avg_dispatch_hours: "平均分拨时长",
      avg_accept_hours: "平均签收时长",
      on_time_completion: "按时办结率",
      avg_completion_working_days: "平均办结时长",
      response_rate: "响应率",
      resolution_rate: "解决率",
      satisfaction_rate: "满意率",
      open: "在办",
      overdue_count: "超期",
      hours: "小时",
      working_days: "工作日",
      sample: "样本",
      trend_volume: "近30日受理 / 分拨 / 办结",
      trend_rates: "近30日一次分拨准确率 / 按时办结率",
      received: "受理",
      dispatched: "分拨",
      completed: "办结",
      overdue: "超期工单",
      at_risk: "临期工单",
      tracking_number: "工单编号",
      excerpt: "诉求摘要",
      lead_unit: "承办单位",
      state: "状态",
      clock: "时限",
      due: "截止",
      over_by: "超期 / 剩余",
      left: "剩余",
      used: "已用",
      supervised: "督办",
      arbitration_queue: "快裁待办",
      arbitration_outcomes: "快裁结果",
      returns: "退回",
      reason: "争议原因",
      candidates: "候选单位",
      escalated_at: "提请时间",
      owner_unit: "裁定责任单位",
      ruling: "裁定意见",
      arbitrated_at: "裁定时间",
      league: "承办单位排行",
      rank: "排名",
      led: "承办",
      late: "超期",
      extensions: "延期",
      dissatisfied: "不满意",
      problems: "问题合计",
      breakdowns: "分类统计",
      by_category: "按类别",
      by_street: "按街道",
      by_unit: "按承办单位",
      name: "名称",
      hotspots: "热点",
      hotspots_hint: "同一社区数日内的相似诉求，按规模排序；点击展开工单",
      size: "诉求数",
      community: "社区",
      period: "时间",
      none: "暂无",
      undispatched: "未分拨",
      unresolved: "未定位",
      uncategorised: "未分类",
      clock_accept: "签收",
      clock_complete: "办结",
      s_dispatched: "待签收",
      s_accepted: "办理中",
      s_returned: "已退回",
      s_completed: "已办结",
      s_called_back: "已回访",
      s_archived: "已归档",
      s_arbitration: "快裁中",
      s_received: "已受理",
      s_routed: "已分类",
      s_needs_dispatcher: "待人工分拨",
      s_linked_duplicate: "重复件",
      s_in_arbitration: "快裁中",
      src_escalated: "已提请",
      src_returned_twice: "两次退回",
      src_arbitrated: "已裁定",
      formula_first_dispatch_accuracy: "首次分拨后未被退回、未被改派的工单 ÷ 已分拨工单",
      formula_avg_dispatch_hours: "受理 → 首次分拨的平均自然小时",
      formula_avg_accept_hours: "受理 → 承办单位签收的平均自然小时",
      formula_on_time_completion: "按期办结 ÷（已办结 + 在办已超期）",
      formula_avg_completion_working_days: "首次分拨 → 办结的平均工作日（法定节假日与调休）",
      formula_response_rate: "时限内签收 ÷ 签收已有结果（已签收或已过签收时限）",
      formula_resolution_rate: "已办结 ÷ 已分拨",
      formula_satisfaction_rate: "（满意 + 基本满意）÷ 已回访",
      lang_switch: "EN",
      fullscreen: "全屏",
      wall_hint: "大屏每次有新事件即自动刷新",
    },
    en: {
      title: "Minyi · Supervisor dashboard",
      wall_title: "Minyi · Command-centre wall",
      signin_title: "Sign in to the supervisor dashboard",
      signin_hint: "Paste a supervisor or admin token. It is kept in this browser.",
      signin_token: "Access token",
      signin_submit: "Sign in",
      signin_failed: "Sign-in failed: ",
      signout: "Sign out",
      wall: "Wall",
      page: "Dashboard",
      live: "Live",
      offline: "Disconnected, reconnecting…",
      loading: "Loading the read model…",
      updated: "Updated",
      from: "From",
      to: "To",
      street: "Street",
      unit: "Unit",
      category: "Category",
      all: "All",
      apply: "Apply",
      reset: "Reset",
      csv: "CSV",
      today: "Today",
      this_week: "This week",
      this_month: "This month",
      in_range: "In range",
      first_dispatch_accuracy: "First-dispatch accuracy",
      avg_dispatch_hours: "Avg. time to dispatch",
      avg_accept_hours: "Avg. time to acceptance",
      on_time_completion: "On-time completion",
      avg_completion_working_days: "Avg. completion",
      response_rate: "Response rate",
      resolution_rate: "Resolution rate",
      satisfaction_rate: "Satisfaction rate",
      open: "Open",
      overdue_count: "Overdue",
      hours: "h",
      working_days: "working days",
      sample: "n",
      trend_volume: "Last 30 days: received / dispatched / completed",
      trend_rates: "Last 30 days: first-dispatch accuracy / on-time completion",
      received: "Received",
      dispatched: "Dispatched",
      completed: "Completed",
      overdue: "Overdue tickets",
      at_risk: "At-risk tickets",
      tracking_number: "Ticket",
      excerpt: "Summary",
      lead_unit: "Lead unit",
      state: "State",
      clock: "Clock",
      due: "Due",
      over_by: "Over / left",
      left: "left",
      used: "Used",
      supervised: "Supervised",
      arbitration_queue: "Arbitration queue",
      arbitration_outcomes: "Arbitration outcomes",
      returns: "Returns",
      reason: "Reason",
      candidates: "Candidates",
      escalated_at: "Escalated",
      owner_unit: "Owner",
      ruling: "Ruling",
      arbitrated_at: "Ruled",
      league: "Unit league table",
      rank: "Rank",
      led: "Led",
      late: "Late",
      extensions: "Extensions",
      dissatisfied: "Dissatisfied",
      problems: "Problems",
      breakdowns: "Breakdowns",
      by_category: "By category",
      by_street: "By street",
      by_unit: "By unit",
      name: "Name",
      hotspots: "Hotspots",
      hotspots_hint: "Similar petitions from one community within a few days, largest first; click to open",
      size: "Petitions",
      community: "Community",
      period: "Period",
      none: "None",
      undispatched: "Not dispatched",
      unresolved: "Unresolved",
      uncategorised: "Uncategorised",
      clock_accept: "accept",
      clock_complete: "complete",
      s_dispatched: "dispatched",
      s_accepted: "accepted",
      s_returned: "returned",
      s_completed: "completed",
      s_called_back: "called back",
      s_archived: "archived",
      s_arbitration: "in arbitration",
      s_received: "received",
      s_routed: "routed",
      s_needs_dispatcher: "needs dispatcher",
      s_linked_duplicate: "duplicate",
      s_in_arbitration: "in arbitration",
      src_escalated: "escalated",
      src_returned_twice: "returned twice",
      src_arbitrated: "ruled",
      formula_first_dispatch_accuracy: "Dispatched tickets whose first dispatch was never returned or re-routed ÷ dispatched tickets",
      formula_avg_dispatch_hours: "Mean wall-clock hours from receipt to first dispatch",
      formula_avg_accept_hours: "Mean wall-clock hours from receipt to the lead unit's acceptance",
      formula_on_time_completion: "Completed by the deadline ÷ (completed + open past the deadline)",
      formula_avg_completion_working_days: "Mean working days (official calendar) from first dispatch to completion",
      formula_response_rate: "Accepted within the limit ÷ acceptance settled (accepted or limit passed)",
      formula_resolution_rate: "Completed ÷ dispatched",
      formula_satisfaction_rate: "(Satisfied + basically satisfied) ÷ called back",
      lang_switch: "中文",
      fullscreen: "Full screen",
      wall_hint: "The wall refreshes by itself on every new event",
    },
  };

  let lang = params.get("lang") || localStorage.getItem(LANG_KEY) || "zh";
  if (!TEXT[lang]) lang = "zh";

  function t(key) {
    return (TEXT[lang] && TEXT[lang][key]) || TEXT.zh[key] || key;
  }

  function setLang(next) {
    lang = TEXT[next] ? next : "zh";
    localStorage.setItem(LANG_KEY, lang);
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    applyText();
  }

  function applyText(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    (root || document).querySelectorAll("[data-i18n-title]").forEach((el) => {
      el.title = t(el.dataset.i18nTitle);
    });
    document.title = t(document.body.dataset.titleKey || "title");
  }

  // ---------------------------------------------------------------- token
  // `?token=` (wall screens, scripts) wins over the signed-in token.
  function token() {
    return params.get("token") || localStorage.getItem(TOKEN_KEY) || "";
  }

  function tokenFromUrl() {
    return Boolean(params.get("token"));
  }

  function saveToken(value) {
    localStorage.setItem(TOKEN_KEY, value);
  }

  function signOut() {
    localStorage.removeItem(TOKEN_KEY);
    location.href = "/dashboard/signin";
  }

  function toSignIn(message) {
    const next = location.pathname + location.search;
    const q = new URLSearchParams({ next });
    if (message) q.set("why", message);
    location.href = "/dashboard/signin?" + q.toString();
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || "HTTP " + status);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, query) {
    const q = new URLSearchParams(query || {});
    const res = await fetch(path + (q.toString() ? "?" + q : ""), {
      headers: { Authorization: "Bearer " + token() },
      cache: "no-store",
    });
    if (!res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch (_) {
        /* not JSON */
      }
      throw new ApiError(res.status, body);
    }
    return res;
  }

  async function apiJson(path, query) {
    return (await api(path, query)).json();
  }

  /// Downloads a table as CSV (the API needs the token, so a plain link would not do).
  async function downloadCsv(table, query) {
    const q = Object.assign({}, query || {}, { lang });
    const res = await api("/api/v1/dashboard/export/" + table + ".csv", q);
    const blob = await res.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const disposition = res.headers.get("content-disposition") || "";
    const m = disposition.match(/filename="([^"]+)"/);
    a.download = m ? m[1] : table + ".csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  // ---------------------------------------------------------------- live
  /// Calls `onChange` on every `changed` event (and once connected); reconnects by itself.
  function live(onChange, onStatus) {
    let source = null;
    let retry = 1000;
    function connect() {
      source = new EventSource("/api/v1/dashboard/stream?token=" + encodeURIComponent(token()));
      source.addEventListener("hello", () => {
        retry = 1000;
        onStatus(true);
        onChange();
      });
      source.addEventListener("changed", () => onChange());
      source.onerror = () => {
        onStatus(false);
        source.close();
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 15000);
      };
    }
    connect();
  }

  /// Runs `load` at most once at a time; a change during a load triggers one more load.
  function refresher(load) {
    let running = false;
    let again = false;
    return async function refresh() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        running = false;
      }
    };
  }

  // ---------------------------------------------------------------- formatting
  const TZ = "Asia/Shanghai";

  function pct(v, digits) {
    if (v === null || v === undefined) return "—";
    return (v * 100).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  function fixed(v, digits) {
    if (v === null || v === undefined) return "—";
    return Number(v).toFixed(digits);
  }

  function dateTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: TZ,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      hour12: false,
    }).formatToParts(d);
    const get = (type) => (parts.find((p) => p.type === type) || {}).value || "";
    return `${get("month")}-${get("day")} ${get("hour") === "24" ? "00" : get("hour")}:${get("minute")}`;
  }

  function today() {
    return new Intl.DateTimeFormat("en-CA", { timeZone: TZ }).format(new Date());
  }

  function stateName(s) {
    return t("s_" + s);
  }

  // ---------------------------------------------------------------- DOM
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e.setAttribute(k, v);
    }
    for (const c of [].concat(children || [])) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  /// A table from `columns` ([key, label, render?]) and rows; empty → "none".
  function table(columns, rows, opts) {
    const o = opts || {};
    const thead = el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c[3] || "" }, t(c[1])))));
    const body = el("tbody");
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, t("none"))));
    }
    rows.forEach((r, i) => {
      const tr = el("tr", { "data-row": i });
      columns.forEach((c) => {
        const v = c[2] ? c[2](r) : r[c[0]];
        tr.append(el("td", { class: c[3] || "", "data-col": c[0] }, v instanceof Node ? v : v === undefined || v === null ? "" : String(v)));
      });
      if (o.onRow) o.onRow(tr, r);
      body.append(tr);
    });
    return el("table", { class: "grid" + (o.compact ? " compact" : "") }, [thead, body]);
  }

  // ---------------------------------------------------------------- charts (inline SVG)
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of [].concat(children || [])) if (c) e.append(c);
    return e;
  }

  const COLORS = ["#1f6feb", "#2da44e", "#d4a72c", "#cf222e", "#8250df"];

  /// A line chart: `labels` on x, `series` [{name, values, color}] on y; `percent` scales 0-1.
  function lineChart(labels, series, opts) {
    const o = Object.assign({ width: 640, height: 220, percent: false, dark: false }, opts || {});
    const pad = { l: 44, r: 12, t: 12, b: 28 };
    const w = o.width - pad.l - pad.r;
    const h = o.height - pad.t - pad.b;
    const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
    let max = o.percent ? 1 : Math.max(1, ...values);
    if (!o.percent) {
      const step = Math.pow(10, Math.floor(Math.log10(max)));
      max = Math.ceil(max / step) * step;
    }
    const x = (i) => pad.l + (labels.length <= 1 ? w / 2 : (i * w) / (labels.length - 1));
    const y = (v) => pad.t + h - (v / max) * h;
    const ink = o.dark ? "#8b949e" : "#57606a";
    const grid = o.dark ? "#30363d" : "#d0d7de";
    const root = svg("svg", {
      viewBox: `0 0 ${o.width} ${o.height}`,
      class: "chart",
      role: "img",
      "aria-label": o.title || "",
    });
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      root.append(svg("line", { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), stroke: grid, "stroke-width": 1 }));
      const label = svg("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", fill: ink, "font-size": 11 });
      label.textContent = o.percent ? Math.round(v * 100) + "%" : String(Math.round(v));
      root.append(label);
    }
    labels.forEach((l, i) => {
      if (i % 5 !== 0 && i !== labels.length - 1) return;
      const anchor = i === 0 ? "start" : i === labels.length - 1 ? "end" : "middle";
      const text = svg("text", { x: x(i), y: o.height - 8, "text-anchor": anchor, fill: ink, "font-size": 11 });
      text.textContent = l;
      root.append(text);
    });
    series.forEach((s, si) => {
      const color = s.color || COLORS[si % COLORS.length];
      let d = "";
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          pen = false;
          return;
        }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = true;
      });
      root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": s.key || s.name }));
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const dot = svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color });
        const title = svg("title");
        title.textContent = `${labels[i]} ${s.name}: ${o.percent ? pct(v) : v}`;
        dot.append(title);
        root.append(dot);
      });
    });
    const legend = el("div", { class: "legend" });
    series.forEach((s, si) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = s.color || COLORS[si % COLORS.length];
      legend.append(el("span", { class: "legend-item" }, [sw, s.name]));
    });
    return el("div", { class: "chart-box" }, [root, legend]);
  }

  /// Horizontal bars: [{label, value}].
  function barChart(items, opts) {
    const o = Object.assign({ width: 420, row: 22, dark: false }, opts || {});
    const max = Math.max(1, ...items.map((i) => i.value));
    const labelW = 130;
    const height = Math.max(o.row, items.length * o.row) + 4;
    const ink = o.dark ? "#c9d1d9" : "#24292f";
    const root = svg("svg", { viewBox: `0 0 ${o.width} ${height}`, class: "chart bars", role: "img" });
    items.forEach((it, i) => {
      const yy = i * o.row + 2;
      const name = svg("text", { x: labelW - 6, y: yy + o.row * 0.68, "text-anchor": "end", fill: ink, "font-size": 12 });
      name.textContent = it.label.length > 10 ? it.label.slice(0, 10) + "…" : it.label;
      const bw = ((o.width - labelW - 40) * it.value) / max;
      const bar = svg("rect", { x: labelW, y: yy + 3, width: Math.max(1, bw), height: o.row - 8, rx: 2, fill: COLORS[0] });
      const title = svg("title");
      title.textContent = `${it.label}: ${it.value}`;
      bar.append(title);
      const val = svg("text", { x: labelW + bw + 4, y: yy + o.row * 0.68, fill: ink, "font-size": 12 });
      val.textContent = String(it.value);
      root.append(name, bar, val);
    });
    return root;
  }

  return {
    t,
    lang: () => lang,
    setLang,
    applyText,
    token,
    tokenFromUrl,
    saveToken,
    signOut,
    toSignIn,
    ApiError,
    api,
    apiJson,
    downloadCsv,
    live,
    refresher,
    pct,
    fixed,
    dateTime,
    today,
    stateName,
    el,
    table,
    lineChart,
    barChart,
    params,
  };
})();
