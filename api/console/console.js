/* The crew console: log in, see the open alerts of my zones (most serious, then nearest
   first), open one, acknowledge it, mark it repaired with a note, comment.

   Plain JavaScript, no build step, nothing from outside the platform. The page is served at
   /console/ and at /console/alerts/{id} (the link in every notification): the address says
   which view to show, once logged in. The session token lives in sessionStorage, so it ends
   with the browser tab. Every text comes from en.json, fr.json or ar.json. */
"use strict";

(function () {
  const script = document.currentScript;
  const ROOT = (script && script.dataset.root) || "";
  const BASE = ROOT + "/console";
  const API = ROOT + "/api/v1";
  const LANGUAGES = ["en", "fr", "ar"];
  const LOCALES = { en: "en-GB", fr: "fr-MA", ar: "ar-MA" }; // ar-MA writes Western digits
  const TIME_ZONE = "Africa/Casablanca";
  const REFRESH_MS = 60000;
  const STORE = { token: "smartcity.token", me: "smartcity.me", language: "smartcity.language" };

  const state = {
    texts: {},
    language: "fr",
    token: sessionStorage.getItem(STORE.token),
    me: JSON.parse(sessionStorage.getItem(STORE.me) || "null"),
    position: null,
    positionState: "waiting",
    alert: null,
    timer: null,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ texts and languages

  function t(key, values) {
    let text = (state.texts[state.language] || {})[key] ?? (state.texts.en || {})[key] ?? key;
    // A text with plural forms is an object by CLDR category ("one", "few"..., "other"
    // always): values.count chooses (Arabic has six, English and French two).
    if (typeof text === "object") {
      text = text[new Intl.PluralRules(LOCALES[state.language]).select(values.count)] ?? text.other;
    }
    // Each value is a bidi isolate (FSI ... PDI): a Latin name or number inside Arabic text
    // keeps its own order ("route-el-menzel-north", "2 km") instead of being scrambled.
    return text.replace(/\{(\w+)\}/g, (_, name) =>
      values && name in values ? `\u2068${values[name]}\u2069` : ""
    );
  }

  async function loadTexts() {
    const loaded = await Promise.all(
      LANGUAGES.map((code) =>
        fetch(`${BASE}/assets/${code}.json`).then((response) => response.json())
      )
    );
    LANGUAGES.forEach((code, index) => (state.texts[code] = loaded[index]));
  }

  function firstLanguage() {
    const chosen = sessionStorage.getItem(STORE.language);
    if (LANGUAGES.includes(chosen)) return chosen;
    if (state.me && LANGUAGES.includes(state.me.language)) return state.me.language;
    const browser = (navigator.language || "fr").slice(0, 2);
    return LANGUAGES.includes(browser) ? browser : "fr";
  }

  function setLanguage(code) {
    state.language = code;
    const root = document.documentElement;
    root.lang = code;
    root.dir = code === "ar" ? "rtl" : "ltr";
    document.querySelectorAll("[data-text]").forEach((node) => {
      node.textContent = t(node.dataset.text);
    });
    document.querySelectorAll("[data-placeholder]").forEach((node) => {
      node.placeholder = t(node.dataset.placeholder);
    });
    document.querySelectorAll("[data-language]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.language === code));
    });
    document.title = `Sefrou · ${t("app_title")}`;
    render(); // the lists and the alert carry texts of their own
  }

  // ------------------------------------------------------------------ formatting

  function title(alert) {
    return (alert.titles && alert.titles[state.language]) || alert.title;
  }

  function place(alert) {
    return alert.device_name || alert.subject;
  }

  function distance(metres) {
    const [unit, value] = metres < 1000 ? ["meter", Math.round(metres)] : ["kilometer", metres / 1000];
    const format = new Intl.NumberFormat(LOCALES[state.language], {
      style: "unit",
      unit,
      unitDisplay: "short",
      maximumFractionDigits: 1,
    });
    return format.format(value);
  }

  function age(iso) {
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const format = new Intl.RelativeTimeFormat(LOCALES[state.language], { numeric: "auto" });
    const steps = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of steps) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
    }
    return format.format(0, "minute");
  }

  function clock(iso) {
    return new Intl.DateTimeFormat(LOCALES[state.language], {
      dateStyle: "short",
      timeStyle: "short",
      timeZone: TIME_ZONE,
    }).format(new Date(iso));
  }

  function element(tag, options, children) {
    const node = document.createElement(tag);
    Object.entries(options || {}).forEach(([name, value]) => {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    });
    (children || []).forEach((child) => child && node.append(child));
    return node;
  }

  function badges(alert) {
    return element("span", { className: "badges" }, [
      element("span", { className: `badge ${alert.severity}`, text: t(`severity_${alert.severity}`) }),
      element("span", { className: `badge status ${alert.status}`, text: t(`status_${alert.status}`) }),
    ]);
  }

  function actor(name) {
    return name === "engine" ? t("engine") : name;
  }

  // ------------------------------------------------------------------ the API

  class Failure extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new Failure(0, t("offline"));
    }
    if (response.status === 401 && state.token) {
      forget();
      toast(t("session_expired"), true);
      render();
      throw new Failure(401, t("session_expired"));
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new Failure(response.status, problem.detail || response.statusText);
    }
    return response.status === 204 ? null : response.json();
  }

  function forget() {
    state.token = null;
    state.me = null;
    sessionStorage.removeItem(STORE.token);
    sessionStorage.removeItem(STORE.me);
  }

  function may(permission) {
    return Boolean(state.me && state.me.permissions.includes(permission));
  }

  // ------------------------------------------------------------------ navigation

  function route() {
    const path = location.pathname.slice(BASE.length);
    const match = /^\/alerts\/([^/]+)\/?$/.exec(path);
    return match ? { alertId: match[1] } : { alertId: null };
  }

  function go(path) {
    history.pushState(null, "", BASE + path);
    render();
  }

  function show(view) {
    ["loading", "login-view", "list-view", "alert-view", "not-found"].forEach((id) => {
      $(id).hidden = id !== view;
    });
    $("back").hidden = view === "list-view" || view === "login-view" || view === "loading";
    window.scrollTo(0, 0);
  }

  function render() {
    if (!Object.keys(state.texts).length) return;
    clearInterval(state.timer);
    if (!state.token) {
      show("login-view");
      return;
    }
    const { alertId } = route();
    if (alertId) openAlert(alertId);
    else openList();
  }

  let toastTimer = null;
  function toast(text, failed) {
    const box = $("toast");
    box.textContent = text;
    box.className = failed ? "toast error" : "toast";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (box.hidden = true), failed ? 6000 : 3000);
  }

  // ------------------------------------------------------------------ log in

  async function logIn(event) {
    event.preventDefault();
    const button = $("login-button");
    button.disabled = true;
    $("login-error").hidden = true;
    try {
      const session = await api("POST", "/auth/login", {
        username: $("username").value.trim(),
        password: $("password").value,
      });
      state.token = session.token;
      state.me = session.user;
      sessionStorage.setItem(STORE.token, session.token);
      sessionStorage.setItem(STORE.me, JSON.stringify(session.user));
      $("password").value = "";
      if (!sessionStorage.getItem(STORE.language)) setLanguage(firstLanguage());
      else render();
    } catch (failure) {
      $("login-error").textContent = failure.status === 401 ? t("login_failed") : failure.message;
      $("login-error").hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  async function logOut() {
    try {
      await api("POST", "/auth/logout");
    } catch (failure) {
      /* the token is forgotten here whatever the server says */
    }
    forget();
    go("/");
  }

  // ------------------------------------------------------------------ the list

  function locate() {
    if (!navigator.geolocation) {
      state.positionState = "none";
      return;
    }
    navigator.geolocation.getCurrentPosition(
      (found) => {
        const first = state.position === null;
        state.position = { latitude: found.coords.latitude, longitude: found.coords.longitude };
        state.positionState = "found";
        if (first && !route().alertId && state.token) openList();
      },
      () => {
        state.positionState = state.position ? "found" : "none";
        if (!route().alertId && state.token) showPositionState();
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  }

  function showPositionState() {
    $("position").textContent = t(`position_${state.positionState}`);
  }

  async function openList() {
    if ($("list-view").hidden) show("list-view");
    const me = state.me;
    $("who-name").replaceChildren(element("bdi", { text: me.display_name || me.username }));
    drawZones(me);
    $("list-title").textContent = may("read") ? t("all_alerts") : t("my_alerts");
    showPositionState();
    const query = new URLSearchParams({ status: "open", sort: "severity", limit: "200" });
    if (state.position) query.set("near", `${state.position.latitude},${state.position.longitude}`);
    try {
      const page = await api("GET", `/alerts?${query}`);
      if (route().alertId) return; // the crew opened an alert meanwhile
      drawList(page.alerts);
    } catch (failure) {
      if (failure.status !== 401) toast(t("failed", { detail: failure.message }), true);
    }
    clearInterval(state.timer);
    state.timer = setInterval(() => {
      locate();
      openList();
    }, REFRESH_MS);
  }

  // The crew's zones come after its alerts, folded: a count ("93 streets and 10 buildings")
  // that opens on their names (the registry's, else the ids).
  function drawZones(me) {
    const some = me.street_groups.length + me.buildings.length > 0;
    $("zones").hidden = !some;
    $("all-zones").hidden = some;
    if (!some) return;
    const locale = LOCALES[state.language];
    const counts = [];
    if (me.street_groups.length) counts.push(t("zones_streets", { count: me.street_groups.length }));
    if (me.buildings.length) counts.push(t("zones_buildings", { count: me.buildings.length }));
    const listed = new Intl.ListFormat(locale, { type: "conjunction" }).format(counts);
    $("zones-summary").textContent = t("zones", { zones: listed });
    const named = (ids, names) =>
      ids.map((id) => (names || {})[id] || id).sort((a, b) => a.localeCompare(b, locale, { numeric: true }));
    const names = [...named(me.street_groups, me.street_group_names), ...named(me.buildings, me.building_names)];
    $("zones-list").replaceChildren(...names.map((name) => element("li", {}, [element("bdi", { text: name })])));
  }

  function drawList(alerts) {
    const list = $("alerts");
    list.replaceChildren(
      ...alerts.map((alert) => {
        const meta = [age(alert.fired_at)];
        if (alert.distance_m !== null) meta.unshift(t("away", { distance: distance(alert.distance_m) }));
        if (alert.acknowledged_by) meta.push(t("acknowledged_by", { who: alert.acknowledged_by }));
        const link = element("a", { href: `${BASE}/alerts/${alert.alert_id}`, className: alert.severity, "data-alert": alert.alert_id }, [
          badges(alert),
          element("span", { className: "alert-title", text: title(alert) }),
          element("span", { className: "alert-place" }, [element("bdi", { text: place(alert) })]),
          element("span", { className: "alert-meta" }, meta.map((text) => element("span", { text }))),
        ]);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          go(`/alerts/${alert.alert_id}`);
        });
        return element("li", {}, [link]);
      })
    );
    $("no-alerts").hidden = alerts.length > 0;
  }

  // ------------------------------------------------------------------ one alert

  async function openAlert(alertId) {
    if (!/^\d{1,18}$/.test(alertId)) {
      show("not-found");
      return;
    }
    try {
      state.alert = await api("GET", `/alerts/${alertId}`);
    } catch (failure) {
      if (failure.status === 404 || failure.status === 422) show("not-found");
      else if (failure.status !== 401) toast(t("failed", { detail: failure.message }), true);
      return;
    }
    if (route().alertId !== alertId) return; // the crew went elsewhere meanwhile
    drawAlert(state.alert);
    if ($("alert-view").hidden) show("alert-view");
  }

  function drawAlert(alert) {
    const facts = [
      element("li", { text: t("place", { place: place(alert) }) }),
      element("li", { text: `${t("raised_at", { time: clock(alert.fired_at) })} (${age(alert.fired_at)})` }),
    ];
    if (alert.device_id) facts.push(element("li", { text: t("device", { device: alert.device_id }) }));
    if (alert.acknowledged_by) facts.push(element("li", { text: t("acknowledged_by", { who: alert.acknowledged_by }) }));
    if (alert.assigned_to) facts.push(element("li", { text: t("assigned_to", { who: alert.assigned_to }) }));
    if (alert.cause) facts.push(element("li", { text: t("cause", { cause: t(`cause_${alert.cause}`) }) }));
    if (alert.muted_by) facts.push(element("li", { text: t("muted") }));
    const map = alert.map_url
      ? element("a", { className: "map", href: alert.map_url, target: "_blank", rel: "noopener", text: t("open_map") })
      : element("p", { className: "muted", text: t("no_map") });
    $("alert").replaceChildren(
      badges(alert),
      element("h2", { text: title(alert) }),
      element("ul", { className: "facts" }, facts),
      map
    );
    drawActions(alert);
    drawGuide(alert);
    drawHistory(alert);
  }

  function drawActions(alert) {
    const open = alert.status === "firing" || alert.status === "acknowledged";
    $("acknowledge").hidden = !(alert.status === "firing" && may("acknowledge"));
    $("repair-form").hidden = !(open && may("repair"));
    $("comment-form").hidden = !may("comment");
    $("work").hidden = $("repair-form").hidden && $("comment-form").hidden;
  }

  function drawGuide(alert) {
    const guide = alert.what_to_check[state.language] || alert.what_to_check.en;
    const box = $("guide");
    if (!guide) {
      box.replaceChildren(element("h3", { text: t("what_to_check") }), element("p", { className: "muted", text: t("no_guide") }));
      return;
    }
    const direction = guide.language === "ar" ? "rtl" : "ltr";
    const parts = [element("h3", { text: t("what_to_check") })];
    if (guide.language !== state.language) parts.push(element("p", { className: "muted small", text: t("in_english") }));
    const body = element("div", { lang: guide.language, dir: direction }, [
      guide.check_intro ? element("p", { text: guide.check_intro }) : null,
      element("ol", { className: "steps" }, guide.steps.map((step) => element("li", { text: step }))),
      guide.bring ? element("p", {}, [element("strong", { text: `${t("bring")} ` }), guide.bring]) : null,
      element("h3", { text: t("what_it_means") }),
      element("p", { text: guide.meaning }),
    ]);
    parts.push(body);
    box.replaceChildren(...parts);
  }

  function drawHistory(alert) {
    const entries = [
      ...alert.transitions.map((step) => ({
        at: step.at,
        text: `${t(`status_${step.to_status}`)} · ${t("by", { who: actor(step.actor) })}`,
        note: step.note,
      })),
      ...alert.comments.map((comment) => ({
        at: comment.at,
        text: `${t("comment")} · ${t("by", { who: comment.author })}`,
        note: comment.body,
      })),
      ...alert.notifications.map((sent) => ({
        at: sent.at,
        text: t(sent.ok ? "notification_sent" : "notification_failed", { route: sent.route }),
        note: "",
      })),
    ].sort((a, b) => new Date(a.at) - new Date(b.at));
    $("history").replaceChildren(
      ...entries.map((entry) =>
        element("li", {}, [
          element("time", { datetime: entry.at, text: clock(entry.at) }),
          element("span", { text: entry.text }),
          entry.note ? element("div", { className: "muted", text: entry.note }) : null,
        ])
      )
    );
  }

  async function act(path, body, done, button) {
    button.disabled = true;
    try {
      state.alert = await api("POST", `/alerts/${state.alert.alert_id}/${path}`, body);
      toast(t(done));
      return true;
    } catch (failure) {
      if (failure.status !== 401) toast(t("failed", { detail: failure.message }), true);
      return false;
    } finally {
      button.disabled = false;
    }
  }

  async function acknowledge() {
    if (await act("acknowledge", {}, "done_acknowledged", $("acknowledge"))) drawAlert(state.alert);
  }

  async function repaired(event) {
    event.preventDefault();
    const note = $("repair-note").value.trim();
    if (!note) {
      toast(t("note_required"), true);
      $("repair-note").focus();
      return;
    }
    if (await act("repaired", { note }, "done_repaired", $("repair-button"))) {
      $("repair-note").value = "";
      drawAlert(state.alert);
    }
  }

  async function comment(event) {
    event.preventDefault();
    const body = $("comment-body").value.trim();
    if (!body) {
      toast(t("comment_required"), true);
      return;
    }
    const alertId = state.alert.alert_id;
    $("comment-button").disabled = true;
    try {
      await api("POST", `/alerts/${alertId}/comments`, { body });
      $("comment-body").value = "";
      toast(t("done_comment"));
      await openAlert(String(alertId));
    } catch (failure) {
      if (failure.status !== 401) toast(t("failed", { detail: failure.message }), true);
    } finally {
      $("comment-button").disabled = false;
    }
  }

  // ------------------------------------------------------------------ start

  async function start() {
    document.querySelectorAll("[data-language]").forEach((button) =>
      button.addEventListener("click", () => {
        sessionStorage.setItem(STORE.language, button.dataset.language);
        setLanguage(button.dataset.language);
      })
    );
    $("login-form").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("refresh").addEventListener("click", () => {
      locate();
      openList();
    });
    $("back").addEventListener("click", () => go("/"));
    $("acknowledge").addEventListener("click", acknowledge);
    $("repair-form").addEventListener("submit", repaired);
    $("comment-form").addEventListener("submit", comment);
    window.addEventListener("popstate", render);
    try {
      await loadTexts();
    } catch (error) {
      $("loading").textContent = "No connection to the server / Pas de connexion au serveur";
      return;
    }
    if (state.token) {
      try {
        state.me = await api("GET", "/auth/me");
        sessionStorage.setItem(STORE.me, JSON.stringify(state.me));
      } catch (failure) {
        /* a stale token was forgotten by api(); the log-in form shows */
      }
    }
    locate();
    setLanguage(firstLanguage());
  }

  start();
})();
