// The live dashboard: the hosts, a chosen host's last hour, the pipeline's figures.
// Plain JavaScript run as served (no build step); charts by the vendored uPlot.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  // A worker that accepts connections but does not answer (stopped, stuck) must turn
  // the page stale, not leave a refresh waiting for ever.
  const REQUEST_TIMEOUT_MS = 8000;
  const HOUR_S = 3600;
  const TOKEN_KEY = "hoststream-token";
  const BAND_FILL = "rgba(198, 40, 40, 0.16)";
  const STAGES = ["store_raw_records", "validate_samples", "aggregate_windows"];
  const tokenRequired = document.documentElement.dataset.tokenRequired === "true";

  const perSecond = (field) => (w) => w[field] / windowSeconds(w);
  // Per chart: silver's samples as lines, gold's 5-minute windows as steps, and the
  // flag whose windows are shaded.
  const CHARTS = {
    cpu: {
      title: "CPU busy (%)",
      percent: true,
      lines: [["CPU %", (s) => s.cpu_percent]],
      steps: [
        ["5-min avg", (w) => w.cpu_avg_percent],
        ["5-min p95", (w) => w.cpu_p95_percent],
      ],
      flag: (w) => w.cpu_anomaly,
    },
    memory: {
      title: "Memory used (%)",
      percent: true,
      lines: [["memory %", (s) => s.memory_percent]],
      steps: [
        ["5-min avg", (w) => w.memory_avg_percent],
        ["5-min max", (w) => w.memory_max_percent],
      ],
      flag: (w) => w.memory_anomaly,
    },
    disk: {
      title: "Fullest disk (%)",
      percent: true,
      lines: [["disk %", (s) => s.disk_max_percent]],
      steps: [["5-min max", (w) => w.disk_max_percent]],
      flag: (w) => w.disk_anomaly,
    },
    network: {
      title: "Network (bytes/s)",
      percent: false,
      lines: [
        ["sent/s", (s) => s.net_bytes_sent_per_s],
        ["received/s", (s) => s.net_bytes_recv_per_s],
      ],
      steps: [
        ["5-min sent/s", perSecond("net_bytes_sent")],
        ["5-min received/s", perSecond("net_bytes_recv")],
      ],
      flag: () => false,
    },
  };
  const LINE_COLOURS = ["#3b6fd8", "#16a34a"];
  const STEP_COLOURS = ["#f59e0b", "#7c3aed"];

  const state = {
    host: null,
    hosts: [],
    anomalies: [],
    samples: [],
    windows: [],
    hostMissing: false,
    to: null,
    metrics: null,
    rates: {},
    updatedAt: null,
    staleSince: null,
    staleWhy: null,
    refreshes: 0,
  };
  const charts = {};
  const bands = {};
  let timer = null;

  class Refused extends Error {}
  class Missing extends Error {}

  const seconds = (iso) => Date.parse(iso) / 1000;
  const windowSeconds = (w) => seconds(w.window_end) - seconds(w.window_start);
  const clock = (date) => date.toISOString().slice(11, 19) + "Z";

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  // The token comes in the address's fragment (never sent to the server), is kept for
  // the tab's life and taken out of the address bar, so it is not bookmarked or shared.
  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const given = params.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return params.get("host");
  }

  async function get(path, asText) {
    const headers = {};
    if (token()) headers.Authorization = "Bearer " + token();
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (error) {
      const why = error.name === "TimeoutError" ? `no answer in ${REQUEST_TIMEOUT_MS / 1000} s` : error.message;
      throw new Error(`the worker did not answer ${path} (${why})`);
    }
    if (response.status === 401) throw new Refused(path);
    if (response.status === 404) throw new Missing(path);
    if (!response.ok) {
      const body = await response.text();
      let why = body.slice(0, 200);
      try {
        why = JSON.parse(body).error;
      } catch (_) {
        // not JSON: the text as it came
      }
      throw new Error(`${path} answered ${response.status}: ${why}`);
    }
    return asText ? response.text() : response.json();
  }

  // --- data ----------------------------------------------------------------------

  // One refresh at a time: a host chosen during one is refreshed right after it.
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      await refreshOnce();
    } finally {
      busy = false;
    }
    if (again) {
      again = false;
      refresh();
    }
  }

  async function refreshOnce() {
    if (tokenRequired && !token()) {
      askToken(false);
      return;
    }
    try {
      const since = new Date(Date.now() - HOUR_S * 1000).toISOString();
      const [hosts, anomalies, metrics] = await Promise.all([
        get("/api/hosts"),
        get("/api/anomalies?since=" + encodeURIComponent(since)),
        get("/metrics", true),
      ]);
      state.hosts = hosts.hosts;
      state.anomalies = anomalies.anomalies.filter((a) => a.window === "5m");
      readMetrics(metrics);
      if (state.host === null && state.hosts.length > 0) state.host = state.hosts[0].host_id;
      if (state.host !== null) await refreshHost(state.host, since);
      state.updatedAt = new Date();
      document.getElementById("token-form").hidden = true;
      state.staleSince = null;
      state.staleWhy = null;
      state.refreshes += 1;
    } catch (error) {
      if (error instanceof Refused) {
        askToken(Boolean(token()));
        return;
      }
      state.staleSince = state.staleSince || new Date();
      state.staleWhy = error instanceof Missing ? `${error.message} answered 404` : String(error.message || error);
    }
    try {
      render();
    } catch (error) {
      document.getElementById("status").textContent = `could not draw: ${error.message || error}`;
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function refreshHost(host, since) {
    const base = "/api/hosts/" + encodeURIComponent(host);
    // After the first answer, only the samples since the newest one held.
    const last = state.samples.length > 0 ? state.samples[state.samples.length - 1] : null;
    const from = last ? "?from=" + encodeURIComponent(last.sample_time) : "";
    let samples;
    let windows;
    try {
      [samples, windows] = await Promise.all([
        get(base + "/samples" + from),
        get(base + "/windows/5m?from=" + encodeURIComponent(since)),
      ]);
    } catch (error) {
      if (!(error instanceof Missing)) throw error;
      state.hostMissing = true;
      state.samples = [];
      state.windows = [];
      return;
    }
    if (host !== state.host) return; // another host was chosen meanwhile
    state.hostMissing = false;
    const newer = last
      ? samples.samples.filter((s) => s.sample_time !== last.sample_time && seconds(s.sample_time) >= seconds(last.sample_time))
      : samples.samples;
    const cutoff = seconds(samples.to) - HOUR_S;
    state.samples = state.samples.concat(newer).filter((s) => seconds(s.sample_time) >= cutoff);
    state.windows = windows.windows;
    state.to = samples.to;
  }

  function parseMetrics(text) {
    const families = {};
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const match = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!match) continue;
      const labels = {};
      for (const pair of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
      (families[match[1]] = families[match[1]] || []).push({ labels, value: Number(match[3]) });
    }
    return families;
  }

  function total(families, name, label, value) {
    return (families[name] || [])
      .filter((m) => label === undefined || m.labels[label] === value)
      .reduce((sum, m) => sum + m.value, 0);
  }

  function readMetrics(text) {
    const families = parseMetrics(text);
    const now = Date.now() / 1000;
    const counters = {
      acknowledged: total(families, "hoststream_records_acknowledged_total"),
      rejected: total(families, "hoststream_records_rejected_total"),
    };
    for (const stage of STAGES) counters[stage] = total(families, "hoststream_records_in_total", "agent", stage);
    const previous = state.metrics;
    state.rates = {};
    if (previous && now > previous.at) {
      for (const [name, value] of Object.entries(counters)) {
        state.rates[name] = Math.max(0, value - previous.counters[name]) / (now - previous.at);
      }
    }
    const commit = families.hoststream_seconds_since_last_commit;
    state.metrics = {
      at: now,
      counters,
      lag: total(families, "hoststream_consumer_lag_records"),
      duplicates: total(families, "hoststream_duplicates_total"),
      late: total(families, "hoststream_late_samples_total"),
      commitAgeS: commit ? commit[0].value : null,
      lakeObjects: families.hoststream_lake_objects_total ? total(families, "hoststream_lake_objects_total") : null,
      alertEvents: total(families, "hoststream_alert_events_total", "stale", "false"),
      // Present only with a Slack webhook set.
      alertsWaiting: families.hoststream_alert_events_waiting ? total(families, "hoststream_alert_events_waiting") : null,
      webhookFailingS: families.hoststream_alert_webhook_failing_seconds
        ? total(families, "hoststream_alert_webhook_failing_seconds")
        : null,
    };
  }

  // What a chart draws, aligned on one time axis as uPlot wants: the samples' times and
  // the windows' bounds; a line has values at its samples, a step the value of the
  // window that holds the time.
  function chartData(spec, samples, windows) {
    const times = new Set(samples.map((s) => seconds(s.sample_time)));
    const spans = windows.map((w) => [seconds(w.window_start), seconds(w.window_end), w]);
    for (const [start, end] of spans) {
      times.add(start);
      times.add(end);
    }
    const xs = Array.from(times).sort((a, b) => a - b);
    const bySample = new Map(samples.map((s) => [seconds(s.sample_time), s]));
    const lines = spec.lines.map(([, value]) => xs.map((x) => (bySample.has(x) ? value(bySample.get(x)) : null)));
    const holding = xs.map((x) => {
      const inside = spans.find(([start, end]) => start <= x && x < end);
      return inside || spans.find(([, end]) => end === x) || null;
    });
    const steps = spec.steps.map(([, value]) => holding.map((span) => (span ? value(span[2]) : null)));
    return {
      data: [xs, ...lines, ...steps],
      bands: spans.filter(([, , w]) => spec.flag(w)).map(([start, end]) => [start, end]),
    };
  }

  // --- drawing -------------------------------------------------------------------

  function formatBytes(value) {
    const units = ["", "k", "M", "G", "T"];
    let i = 0;
    let v = Math.abs(value);
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return (value < 0 ? "-" : "") + v.toFixed(v < 10 && i > 0 ? 1 : 0) + units[i];
  }

  function drawBands(u, name) {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = BAND_FILL;
    for (const [start, end] of bands[name] || []) {
      const left = Math.max(u.bbox.left, u.valToPos(start, "x", true));
      const right = Math.min(u.bbox.left + u.bbox.width, u.valToPos(end, "x", true));
      if (right > left) ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
    }
    ctx.restore();
  }

  function makeChart(name, spec, data) {
    const element = document.getElementById("chart-" + name);
    const series = [{}];
    spec.lines.forEach(([label], i) => series.push({ label, stroke: LINE_COLOURS[i], width: 1, spanGaps: true, points: { show: false } }));
    spec.steps.forEach(([label], i) =>
      series.push({ label, stroke: STEP_COLOURS[i], width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }),
    );
    const values = spec.percent ? (u, ticks) => ticks.map((t) => t + "%") : (u, ticks) => ticks.map(formatBytes);
    const options = {
      title: spec.title,
      width: Math.max(300, element.clientWidth - 2),
      height: 200,
      series,
      scales: spec.percent ? { y: { range: [0, 100] } } : {},
      axes: [{}, { values, size: 60 }],
      hooks: { drawClear: [(u) => drawBands(u, name)] },
    };
    element.textContent = "";
    return new uPlot(options, data, element);
  }

  function renderCharts() {
    for (const [name, spec] of Object.entries(CHARTS)) {
      const { data, bands: flagged } = chartData(spec, state.samples, state.windows);
      bands[name] = flagged;
      if (charts[name]) charts[name].setData(data);
      else charts[name] = makeChart(name, spec, data);
    }
  }

  function ago(iso) {
    const s = Math.max(0, Date.now() / 1000 - seconds(iso));
    if (s < 90) return `${s.toFixed(0)} s ago`;
    if (s < 5400) return `${(s / 60).toFixed(0)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderHosts() {
    const flagged = {};
    for (const a of state.anomalies) flagged[a.host_id] = (flagged[a.host_id] || 0) + 1;
    const body = document.querySelector("#hosts tbody");
    body.textContent = "";
    for (const host of state.hosts) {
      const row = body.insertRow();
      row.dataset.host = host.host_id;
      row.title = host.host_id;
      const count = flagged[host.host_id] || 0;
      row.classList.toggle("anomalous", count > 0);
      row.classList.toggle("chosen", host.host_id === state.host);
      cell(row, host.hostname);
      cell(row, ago(host.last_sample_time));
      cell(row, String(count), "num");
    }
    document.getElementById("no-hosts").hidden = state.hosts.length > 0;
  }

  function renderPipeline() {
    const m = state.metrics;
    if (!m) return;
    const rate = (name) => (name in state.rates ? `${state.rates[name].toFixed(1)}/s` : "-");
    const rows = [
      ["bronze in", rate("store_raw_records")],
      ["silver in", rate("validate_samples")],
      ["gold in", rate("aggregate_windows")],
      ["acknowledged", rate("acknowledged")],
      ["consumer lag", `${m.lag} records`],
      ["rejected", `${m.counters.rejected} (${rate("rejected")})`],
      ["duplicates", String(m.duplicates)],
      ["late samples", String(m.late)],
      ["last commit", m.commitAgeS === null ? "none yet" : `${m.commitAgeS.toFixed(1)} s ago`],
    ];
    if (m.lakeObjects !== null) rows.push(["lake objects", String(m.lakeObjects)]);
    rows.push(["alert events", String(m.alertEvents)]);
    if (m.alertsWaiting !== null) {
      const failing = m.webhookFailingS > 0 ? `, webhook failing ${m.webhookFailingS.toFixed(0)} s` : "";
      rows.push(["alerts to Slack", `${m.alertsWaiting} waiting${failing}`]);
    }
    const body = document.querySelector("#pipeline tbody");
    body.textContent = "";
    for (const [label, value] of rows) {
      const row = body.insertRow();
      row.dataset.figure = label;
      cell(row, label);
      cell(row, value, "num");
    }
  }

  function render() {
    const status = document.getElementById("status");
    if (state.staleSince) {
      status.textContent = `stale since ${clock(state.staleSince)}: ${state.staleWhy}`;
      status.classList.add("stale");
    } else if (state.updatedAt) {
      status.textContent = `updated ${clock(state.updatedAt)}, every ${REFRESH_MS / 1000} s`;
      status.classList.remove("stale");
    }
    renderHosts();
    renderPipeline();
    const title = document.getElementById("host-title");
    if (state.host === null) title.textContent = "Choose a host";
    else if (state.hostMissing) title.textContent = `${state.host}: no such host`;
    else title.textContent = state.host;
    if (state.host !== null) renderCharts();
  }

  // --- the user's moves ----------------------------------------------------------

  function askToken(refused) {
    const form = document.getElementById("token-form");
    form.hidden = false;
    form.classList.toggle("refused", refused);
    document.getElementById("token-message").textContent = refused
      ? "The token was refused: give this worker's HOSTSTREAM_WEB_TOKEN."
      : "This worker's API needs its token (HOSTSTREAM_WEB_TOKEN).";
    document.getElementById("status").textContent = "waiting for the API token";
    clearTimeout(timer);
  }

  function choose(host) {
    if (host === state.host) return;
    state.host = host;
    state.samples = [];
    state.windows = [];
    state.hostMissing = false;
    refresh();
  }

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value);
    document.getElementById("token-form").hidden = true;
    refresh();
  });

  document.querySelector("#hosts tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (row) location.hash = "host=" + encodeURIComponent(row.dataset.host);
  });

  window.addEventListener("hashchange", () => {
    const host = readFragment();
    if (host) choose(host);
    else if (token()) refresh();
  });

  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) {
      const element = document.getElementById("chart-" + name);
      chart.setSize({ width: Math.max(300, element.clientWidth - 2), height: 200 });
    }
  });

  // For the browser test, and for whoever opens the console: what is drawn.
  window.hoststream = {
    state,
    charts,
    plotted: (name) =>
      charts[name] && {
        labels: charts[name].series.map((s) => s.label || null),
        data: charts[name].data.map((column) => Array.from(column)),
        bands: bands[name],
      },
  };

  state.host = readFragment();
  refresh();
})();
