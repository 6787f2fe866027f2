// The integration dashboard: the support manual's set-up flow over the admin API of the same origin.
//
// Writes go through the same routes as the manual's curl commands. A new integration is one group write and
// then one write per location; so that nothing is saved half-way, the page checks the whole set-up (the
// registry's rules from /dashboard/rules.json, and read-only look-ups for an existing group or mapping)
// before the first write. If a location is still refused after the group is saved, the page says what was
// saved and keeps the rest for fixing and retrying; every write is an idempotent PUT, so retrying is safe.

const TOKEN_KEY = "cliniko-reviews.adminToken";
const STEPS = ["crm", "trigger", "properties", "locations", "review"];

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

// -- API --------------------------------------------------------------------------------------------------

// The page's words for the refusals a person meets here. The API's own message is written for curl users and
// names routes ("change it with PATCH /admin/mappings/..."); a refusal with a `code` (pipeline.registry.store)
// is shown in these words instead, built from its `details`. The page's own checks before a write use the
// same words, so each case is worded in one place.
const ERROR_WORDS = {
  mapping_exists: (d) =>
    `is already mapped in integration group ${d.integrationGroupId}; to change it, use Edit on its row in the Integrations list`,
  group_exists: (d) =>
    `already has integration group ${d.groupId}; add locations to it with Add location on that group in the Integrations list`,
};

function inWords(problem) {
  const words = ERROR_WORDS[problem.code];
  return words ? { ...problem, message: words(problem.details ?? {}) } : problem;
}

class ApiError extends Error {
  constructor(status, body) {
    const problems = (body?.errors ?? (body?.error ? [body.error] : [])).map(inWords);
    super(problems.map((p) => p.message).join("; ") || `the admin server answered ${status}`);
    this.status = status;
    this.problems = problems.length ? problems : [{ field: null, message: this.message }];
  }
}

class NetworkError extends Error {}
class SignInRequired extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new NetworkError("could not reach the admin server");
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(token ? "The admin token was refused. Sign in again." : "");
    throw new SignInRequired();
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function findGroupOf(businessNumber) {
  try {
    return await api("GET", `/integration/businessintegrationgroup/${businessNumber}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

// -- state ------------------------------------------------------------------------------------------------

const state = {
  rules: null,
  view: "list",
  groups: [],
  mappings: [],
  triggersBySource: new Map(),
  dialog: null,
  drawer: null,
  history: null,
};

let wizard = freshWizard();

function freshWizard() {
  return { step: 0, source: null, triggers: [], locations: [], groupId: null, groupUnknown: false, nextId: 1 };
}

async function triggersOf(sourceId) {
  if (!state.triggersBySource.has(sourceId)) {
    state.triggersBySource.set(sourceId, await api("GET", `/integration/trigger/integrationtriggers/sourceid/${sourceId}`));
  }
  return state.triggersBySource.get(sourceId);
}

// -- messages next to fields ------------------------------------------------------------------------------

function say(message) {
  $("status").textContent = message;
}

function labelOf(id) {
  const el = $(id);
  if (!el) return "";
  const label = document.querySelector(`label[for="${id}"]`);
  if (label) return label.textContent.trim();
  return el.querySelector?.("legend")?.textContent.trim() ?? "";
}

function showFieldError(id, message) {
  const input = $(id);
  let note = $(`${id}-error`);
  if (!note) {
    note = h("p", { class: "field-error", id: `${id}-error` });
    const check = input.closest(".check");
    if (check) check.after(note);
    else (input.closest(".field") ?? input).append(note);
  }
  note.textContent = message;
  note.hidden = false;
  input.setAttribute("aria-invalid", "true");
  const described = (input.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean);
  if (!described.includes(note.id)) input.setAttribute("aria-describedby", [...described, note.id].join(" "));
}

function clearErrors(root) {
  for (const note of root.querySelectorAll(".field-error")) {
    note.hidden = true;
    note.textContent = "";
  }
  for (const el of root.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function showBanner(id, message) {
  const banner = $(id);
  banner.replaceChildren(...(Array.isArray(message) ? message : [message]));
  banner.hidden = !message || (Array.isArray(message) && !message.length);
}

// The API names the request field it refused (`integrationProperties[1].propertyValue`); `fieldMap` says which
// input produced that part of the request. A path not in the map falls back to its nearest parent path, but
// never past a list index: an item the page did not send belongs to no input (it goes to the banner).
function inputFor(path, fieldMap) {
  let current = path ?? "";
  while (current) {
    if (Object.hasOwn(fieldMap, current)) return fieldMap[current];
    const cut = Math.max(current.lastIndexOf("."), current.lastIndexOf("["));
    if (cut <= 0 || current[cut] === "[") break;
    current = current.slice(0, cut);
  }
  return null;
}

function placeProblems(problems, fieldMap) {
  const placed = [];
  const unplaced = [];
  for (const problem of problems) {
    const id = inputFor(problem.field, fieldMap);
    if (id) placed.push({ id, message: problem.message });
    else unplaced.push(problem.field && !problem.code ? `${problem.field}: ${problem.message}` : problem.message);
  }
  return { placed, unplaced };
}

// -- rules (the registry's, from /dashboard/rules.json) ---------------------------------------------------

class Check {
  constructor() {
    this.problems = [];
  }
  fail(id, message) {
    this.problems.push({ id, message });
  }
  get ok() {
    return this.problems.length === 0;
  }
}

function checkBusinessNumber(text, id, check) {
  const value = text.trim();
  if (!/^[0-9]+$/.test(value)) {
    check.fail(id, "must be a positive integer (digits only)");
    return null;
  }
  const number = value.replace(/^0+/, "");
  if (!number) check.fail(id, "must be a positive integer, not 0");
  else if (number.length > state.rules.maxBusinessNumberDigits) {
    check.fail(id, `must have at most ${state.rules.maxBusinessNumberDigits} digits`);
  }
  return number;
}

function checkApiKey(key, value, id, check) {
  if (!value || /\s/.test(value)) {
    check.fail(id, "must be a non-empty value without spaces");
    return;
  }
  // The rule of pipeline/cliniko/shards.py (`shard_of`): a suffix that looks like a shard must name one.
  if (key === state.rules.keys.clinikoApiKey && value.includes("-")) {
    const suffix = value.slice(value.lastIndexOf("-") + 1);
    const shardLike = new RegExp(state.rules.shardPattern, "i").test(suffix);
    if (shardLike && !state.rules.clinikoShards.includes(suffix.toLowerCase())) {
      check.fail(
        id,
        `ends in an unknown shard suffix; a suffix after the last '-' that looks like a shard must be one ` +
          `of ${state.rules.clinikoShards.join(", ")}; a key without one lives on ${state.rules.defaultShard}`,
      );
    }
  }
}

function checkInteger(key, input, id, check) {
  const [low, high] = state.rules.integerRanges[key];
  const text = String(input).trim();
  if (!/^[+-]?[0-9]+$/.test(text)) {
    check.fail(id, `must be a whole number from ${low} to ${high}`);
    return null;
  }
  const number = Number(text);
  if (number < low || number > high) check.fail(id, `must be a whole number from ${low} to ${high}`);
  return String(number);
}

function numberText(id) {
  const input = $(id);
  // A number input holding "abc" reports value "" and validity.badInput: keep that distinguishable from blank.
  return input.validity?.badInput ? "not a number" : input.value.trim();
}

function runTimeIso(local) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(local)) return null;
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

function defaultRunTimeLocal() {
  const [hours, minutes] = state.rules.defaultRunTimeUtc.split(":").map(Number);
  const now = new Date();
  let next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), hours, minutes);
  if (next <= now.getTime()) next += 86_400_000;
  return new Date(next).toISOString().slice(0, 16);
}

function mask(value) {
  return value.length >= 12 ? `****${value.slice(-4)}` : "****";
}

// -- a next run time in the past (GET /dashboard/catch-up: the calendar's planner, worded by the server) -----

// What a location's catch-up depends on. The fetch delay and catch-up days are the ones in force: the
// location's own, else its group's, else the registry's default (the wizard sets no catch-up days).
function catchUpInput(loc, context) {
  const key = state.rules.keys.catchupDays;
  const catchup = context.mapping
    ? effective(context.mapping, key)
    : context.group?.integrationGroupProperties.find((p) => p.propertyKey === key);
  return {
    nextRun: loc.nextRun,
    frequency: loc.frequency,
    active: loc.active,
    fetchDelay: loc.fetchDelay !== "" ? loc.fetchDelay : groupFetchDelay(context.group),
    catchupDays: catchup?.propertyValue ?? String(state.rules.defaultCatchupDays),
    existing: context.mode === "edit",
  };
}

// The server's answer for these inputs, or null when they are not complete or valid yet (their own checks
// say so) or the answer did not come.
async function catchUpOf(input) {
  const nextRunTime = runTimeIso(input.nextRun);
  const every = String(input.frequency.value);
  const max = state.rules.maxFrequency[input.frequency.unit];
  if (!nextRunTime || !/^[0-9]+$/.test(every) || Number(every) < 1 || Number(every) > max) return null;
  if (!/^[0-9]+$/.test(String(input.fetchDelay))) return null;
  const query = new URLSearchParams({
    nextRunTime,
    frequencyValue: every,
    frequencyUnit: input.frequency.unit,
    fetchDelay: input.fetchDelay,
    catchupDays: input.catchupDays,
    active: input.active,
    existing: input.existing,
  });
  try {
    return await api("GET", `/dashboard/catch-up?${query}`);
  } catch (error) {
    if (error instanceof SignInRequired) throw error;
    return null;
  }
}

let drawerWarningSeq = 0;

// The warning under the drawer's next run time, kept in step with every input it depends on.
async function updateDrawerWarning() {
  const context = state.drawer;
  const warning = $("loc-next-run-warning");
  if (!context?.mode) return;
  const seq = ++drawerWarningSeq;
  let found = null;
  try {
    found = await catchUpOf(catchUpInput(readLocation(), context));
  } catch {
    return;
  }
  if (seq !== drawerWarningSeq || state.drawer !== context) return; // a newer input, or another drawer
  warning.textContent = found?.message ?? "";
  warning.hidden = !found?.message;
}

// -- formatting -------------------------------------------------------------------------------------------

function plural(value, unit) {
  return `${value} ${value === 1 ? unit.replace(/s$/, "") : unit}`;
}

function runText(iso) {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "—";
}

function sourceName(source) {
  const name = source.integrationSource;
  return name.charAt(0) + name.slice(1).toLowerCase();
}

function effective(mapping, key) {
  return mapping.effectiveProperties.find((p) => p.propertyKey === key) ?? null;
}

function own(mapping, key) {
  return mapping.integrationProperties.find((p) => p.propertyKey === key) ?? null;
}

function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}`.trim() }, text);
}

// -- views ------------------------------------------------------------------------------------------------

function showView(view) {
  state.view = view;
  $("login-view").hidden = true;
  $("list-view").hidden = view !== "list";
  $("wizard-view").hidden = view !== "wizard";
  $("nav-list").setAttribute("aria-current", view === "list" ? "page" : "false");
  $("nav-add").setAttribute("aria-current", view === "wizard" ? "page" : "false");
  $("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  if (state.dialog) closeDialog();
  $("list-view").hidden = true;
  $("wizard-view").hidden = true;
  $("login-view").hidden = false;
  $("sign-out").hidden = true;
  clearErrors($("login-form"));
  if (message) showFieldError("login-token", message);
  $("login-token").value = "";
  $("login-token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $("login-token").value.trim();
  clearErrors($("login-form"));
  if (!token) {
    showFieldError("login-token", "enter the admin token");
    $("login-token").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await api("GET", "/admin/health");
  } catch (error) {
    if (!(error instanceof SignInRequired)) showFieldError("login-token", error.message);
    return;
  }
  showView(state.view);
  say("Signed in.");
  if (state.view === "list") await loadList();
  else showStep(wizard.step);
}

// -- integrations list ------------------------------------------------------------------------------------

async function loadList() {
  try {
    const [groups, mappings] = await Promise.all([api("GET", "/admin/groups"), api("GET", "/admin/mappings")]);
    state.groups = groups.groups;
    state.mappings = mappings.mappings;
    await Promise.all([...new Set(state.groups.map((g) => g.integrationSourceType.id))].map(triggersOf));
  } catch (error) {
    if (!(error instanceof SignInRequired)) say(`Could not load the integrations: ${error.message}`);
    return false;
  }
  renderList();
  return true;
}

function renderList() {
  const filter = $("filter").value.trim();
  const cards = [];
  let shown = 0;
  for (const group of state.groups) {
    const all = state.mappings.filter((m) => m.integrationGroupId === group.groupId);
    const parentMatches = !filter || group.parentBusinessNumber.includes(filter);
    const mappings = parentMatches ? all : all.filter((m) => m.businessNumber.includes(filter));
    if (!parentMatches && !mappings.length) continue;
    shown += mappings.length;
    cards.push(groupCard(group, mappings));
  }
  const active = state.mappings.filter((m) => m.active).length;
  $("list-summary").textContent = filter
    ? `${cards.length} of ${state.groups.length} groups and ${shown} of ${state.mappings.length} locations match ${filter}.`
    : `${state.groups.length} groups, ${state.mappings.length} locations (${active} active).`;
  // Re-rendering replaces the buttons: keep the keyboard focus on the same action.
  const focused = document.activeElement?.dataset?.key;
  $("groups").replaceChildren(
    ...(cards.length ? cards : [h("p", { class: "empty" }, filter ? "Nothing matches." : "No integrations yet.")]),
  );
  if (focused) document.querySelector(`[data-key="${focused}"]`)?.focus();
}

function groupCard(group, mappings) {
  const id = group.groupId;
  const catalogue = state.triggersBySource.get(group.integrationSourceType.id) ?? [];
  const triggerNames = group.integrationGroupTriggers.map((t) => {
    const known = catalogue.find((c) => c.id === t.triggerId);
    return known ? `${known.displayName} (${t.triggerId}, ${known.integrationTriggerType.name})` : `trigger ${t.triggerId}`;
  });
  const props = group.integrationGroupProperties.map((p) => `${p.propertyKey} = ${p.propertyValue}`);
  return h(
    "article",
    { class: "group card", "aria-labelledby": `group-${id}-title`, "data-group-id": id },
    h(
      "header",
      { class: "group-head" },
      h("h3", { id: `group-${id}-title` }, `Parent ${group.parentBusinessNumber}`),
      h("span", { class: "muted" }, `group ${id}`),
    ),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Source"),
      h("dd", {}, `${sourceName(group.integrationSourceType)} (${group.integrationSourceType.id}, ${group.integrationSourceType.sourceCategory})`),
      h("dt", {}, "Triggers"),
      h("dd", { class: "triggers" }, triggerNames.join("; ") || "none"),
      h("dt", {}, "Group properties"),
      h("dd", { class: "props" }, props.join("; ") || "none"),
    ),
    h(
      "div",
      { class: "group-actions" },
      h("button", { type: "button", "data-key": `add-${id}`, "aria-label": `Add location to group ${id}`, onclick: (e) => openLocationDrawer({ mode: "create", group }, e.currentTarget) }, "Add location"),
      h("button", { type: "button", "data-key": `triggers-${id}`, "aria-label": `Triggers of group ${id}`, onclick: (e) => openTriggerDrawer(group, e.currentTarget) }, "Triggers"),
    ),
    mappings.length ? mappingTable(group, mappings) : h("p", { class: "empty" }, "No locations yet."),
  );
}

function mappingTable(group, mappings) {
  const columns = ["Business ID", "Location names", "Status", "Frequency", "Next run", "Fetch delay", "API keys", "Actions"];
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "mappings" },
      h("caption", { class: "visually-hidden" }, `Locations of group ${group.groupId}`),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, mappings.map((m) => mappingRow(group, m, columns))),
    ),
  );
}

function mappingRow(group, m, columns) {
  const keys = state.rules.keys;
  const names = own(m, keys.locationName)?.propertyValue ?? "";
  const excluded = effective(m, keys.excludedTypes);
  const namesCell = excluded?.propertyValue
    ? [names, h("br"), h("small", {}, `no request after: ${excluded.propertyValue} `), excluded.level === "mapping" ? badge("override", "override") : badge("group")]
    : names;
  const delay = effective(m, keys.fetchDelay);
  const delayCell = delay
    ? [plural(Number(delay.propertyValue), "days"), " ", delay.level === "mapping" ? badge("override", "override") : badge("group")]
    : [plural(0, "days"), " ", badge("default")];
  const keyCell = [keys.clinikoApiKey, keys.birdeyeApiKey].flatMap((key) => {
    const prop = effective(m, key);
    if (!prop) return [];
    return [h("span", { class: "key" }, `${key.split(".")[0]} ${prop.propertyValue} `, prop.level === "mapping" ? badge("override", "override") : badge("group"))];
  });
  const status = [badge(m.active ? "active" : "inactive", m.active ? "on" : "off")];
  if (m.test) status.push(" ", badge("test"));
  if (m.beta) status.push(" ", badge("beta"));
  const cells = [
    h("th", { scope: "row" }, m.businessNumber),
    h("td", {}, namesCell),
    h("td", { class: "status-cell" }, status),
    h("td", { class: "nowrap" }, `every ${plural(m.frequency.value, m.frequency.unit)}`),
    h("td", { class: "nowrap" }, runText(m.nextRunTime)),
    h("td", { class: "delay-cell" }, delayCell),
    h("td", { class: "keys" }, keyCell.length ? keyCell : "—"),
    h(
      "td",
      {},
      h(
        "div",
        { class: "row-actions" },
        h("button", { type: "button", "data-key": `edit-${m.businessNumber}`, "aria-label": `Edit ${m.businessNumber}`, onclick: (e) => openLocationDrawer({ mode: "edit", group, mapping: m }, e.currentTarget) }, "Edit"),
      m.active
          ? h("button", { type: "button", class: "danger", "data-key": `deactivate-${m.businessNumber}`, "aria-label": `Deactivate ${m.businessNumber}`, onclick: () => deactivate(m) }, "Deactivate")
          : null,
      ),
    ),
  ];
  // On a narrow window each cell shows its column name (CSS ::before) beside one value box.
  cells.forEach((cell, index) => {
    cell.setAttribute("data-label", columns[index]);
    cell.replaceChildren(h("span", { class: "value" }, [...cell.childNodes]));
  });
  return h("tr", { "data-business-number": m.businessNumber }, cells);
}

async function deactivate(mapping) {
  const number = mapping.businessNumber;
  if (!window.confirm(`Deactivate location ${number}? It stays in the registry; Edit can make it active again.`)) return;
  try {
    await api("POST", `/admin/mappings/${number}/deactivate`);
  } catch (error) {
    if (!(error instanceof SignInRequired)) say(`Location ${number} was not deactivated: ${error.message}`);
    return;
  }
  await loadList();
  say(`Location ${number} deactivated.`);
  document.querySelector(`[data-key="edit-${number}"]`)?.focus();
}

// -- dialogs (drawers) ------------------------------------------------------------------------------------

const FOCUSABLE = "input:not([disabled]):not([type=hidden]), select:not([disabled]), button:not([disabled]), [href], textarea";

function openDialog(dialog, opener) {
  state.dialog = { dialog, openerKey: opener?.dataset?.key ?? null, opener };
  dialog.hidden = false;
  $("backdrop").hidden = false;
  $("main").inert = true;
  document.querySelector("header.topbar").inert = true;
  const first = [...dialog.querySelectorAll(FOCUSABLE)].find((el) => !el.readOnly && !el.closest("[hidden]") && !el.classList.contains("close"));
  (first ?? dialog).focus();
}

function closeDialog() {
  const current = state.dialog;
  if (!current) return;
  current.dialog.hidden = true;
  $("backdrop").hidden = true;
  $("main").inert = false;
  document.querySelector("header.topbar").inert = false;
  state.dialog = null;
  state.drawer = null;
  state.history = null;
  const back = current.opener?.isConnected ? current.opener : document.querySelector(`[data-key="${current.openerKey}"]`);
  back?.focus();
}

function onKeydown(event) {
  if (!state.dialog) return;
  if (event.key === "Escape") {
    event.preventDefault();
    closeDialog();
    return;
  }
  if (event.key !== "Tab") return;
  const items = [...state.dialog.dialog.querySelectorAll(FOCUSABLE)].filter((el) => !el.closest("[hidden]"));
  if (!items.length) return;
  const [first, last] = [items[0], items[items.length - 1]];
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
}

// -- location drawer: add (pending, in the wizard), add to an existing group, edit ------------------------

function groupFetchDelay(group) {
  if (group) return group.integrationGroupProperties.find((p) => p.propertyKey === state.rules.keys.fetchDelay)?.propertyValue ?? "0";
  return numberText("g-fetch-delay") || "0";
}

function openLocationDrawer(context, opener) {
  const form = $("location-form");
  form.reset();
  clearErrors(form);
  showBanner("drawer-error", "");
  state.drawer = context;
  const { mode, mapping, location } = context;
  const keys = state.rules.keys;
  const smb = mode === "pending" && wizardKind() === "smb";
  const titles = { pending: "Add location", create: `Add location to group ${context.group?.groupId}`, edit: `Edit location ${mapping?.businessNumber}` };
  $("drawer-title").textContent = location ? `Edit location ${location.businessNumber}` : titles[mode];
  $("location-submit").textContent = mode === "pending" ? (location ? "Update" : "Add") : "Save";

  const number = $("loc-business-number");
  number.readOnly = mode === "edit" || smb;
  number.value = mapping?.businessNumber ?? location?.businessNumber ?? (smb ? $("g-parent").value.trim() : "");
  $("loc-status").value = (mapping ?? location ?? { active: true }).active ? "active" : "inactive";
  $("loc-test").checked = Boolean((mapping ?? location)?.test);
  $("loc-beta").checked = Boolean((mapping ?? location)?.beta);
  const frequency = mapping?.frequency ?? location?.frequency ?? state.rules.defaultFrequency;
  $("loc-frequency-value").value = frequency.value;
  $("loc-frequency-unit").value = frequency.unit;
  $("loc-next-run").value = mapping ? mapping.nextRunTime.slice(0, 16) : (location?.nextRun ?? defaultRunTimeLocal());
  $("loc-fetch-delay").value = mapping ? (own(mapping, keys.fetchDelay)?.propertyValue ?? "") : (location?.fetchDelay ?? "");
  $("loc-fetch-delay-hint").textContent = `Blank: the group's value (${plural(Number(groupFetchDelay(context.group)), "days")}).`;
  $("loc-names").value = mapping ? (own(mapping, keys.locationName)?.propertyValue ?? "") : (location?.names ?? "");
  $("loc-excluded-types").value = mapping ? (own(mapping, keys.excludedTypes)?.propertyValue ?? "") : (location?.excludedTypes ?? "");
  $("loc-cliniko-key").value = location?.clinikoKey ?? "";
  $("loc-birdeye-key").value = location?.birdeyeKey ?? "";
  for (const [key, id] of [[keys.clinikoApiKey, "loc-cliniko-key"], [keys.birdeyeApiKey, "loc-birdeye-key"]]) {
    const override = mapping ? own(mapping, key) : null;
    $(`${id}-remove-wrap`).hidden = !override;
    $(`${id}-hint`).textContent = override
      ? `This location overrides the group's key (${override.propertyValue}). Blank: keep it.`
      : "Blank: use the group's key.";
  }
  $("loc-next-run-warning").hidden = true;
  $("loc-next-run-warning").textContent = "";
  openDialog($("location-drawer"), opener);
  updateDrawerWarning();
  if (location?.errors?.length) showProblems(location.errors, "drawer-error");
  showHistory(mode === "edit" ? mapping.businessNumber : null);
}

// -- a location's history in its drawer (GET /admin/audit) -----------------------------------------------

const HISTORY_PAGE = 20;

function showHistory(businessNumber) {
  $("loc-history").hidden = !businessNumber;
  $("loc-history-list").replaceChildren();
  $("loc-history-more").hidden = true;
  $("loc-history-status").textContent = "";
  state.history = businessNumber ? { businessNumber, cursor: null } : null;
  if (businessNumber) loadHistory();
}

async function loadHistory() {
  const history = state.history;
  const query = new URLSearchParams({ businessNumber: history.businessNumber, limit: HISTORY_PAGE });
  if (history.cursor) query.set("cursor", history.cursor);
  $("loc-history-status").textContent = "Loading history…";
  let page;
  try {
    page = await api("GET", `/admin/audit?${query}`);
  } catch (error) {
    if (state.history === history && !(error instanceof SignInRequired)) {
      $("loc-history-status").textContent = `The history could not be loaded: ${error.message}.`;
    }
    return;
  }
  if (state.history !== history) return; // the drawer was closed or shows another location now
  $("loc-history-list").append(...page.changes.map(historyItem));
  history.cursor = page.nextCursor;
  $("loc-history-more").hidden = !page.nextCursor;
  const shown = $("loc-history-list").children.length;
  $("loc-history-status").textContent = shown ? "" : "No recorded changes yet.";
}

function historyItem(change) {
  const what = change.entityKind === "group" ? `group ${change.entityId}` : "this location";
  return h(
    "li",
    { "data-change-id": change.id },
    h(
      "p",
      { class: "history-head" },
      h("time", { datetime: change.changedAt }, runText(change.changedAt)),
      " · ",
      h("span", { class: "who" }, change.changedBy),
      ` · ${change.action === "create" ? "created" : "changed"} ${what}`,
      change.route ? ` (${change.method} ${change.route})` : "",
    ),
    h("ul", { class: "history-fields" }, change.changes.map(fieldChange)),
  );
}

function fieldChange(change) {
  const sameMask = change.secret && change.before === change.after;
  return h(
    "li",
    {},
    h("span", { class: "field-name" }, change.field),
    `: ${historyValue(change.before)} → ${historyValue(change.after)}`,
    sameMask ? " (a new key with the same last 4 characters)" : "",
  );
}

function historyValue(value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.map((t) => `trigger ${t.triggerId} (actions ${t.actionIds.join(", ")})`).join("; ") || "none";
  if (typeof value === "object") return "value" in value && "unit" in value ? `every ${plural(value.value, value.unit)}` : JSON.stringify(value);
  return String(value);
}

function showProblems(problems, bannerId) {
  const loose = [];
  for (const problem of problems) {
    if (problem.id && $(problem.id)) showFieldError(problem.id, problem.message);
    else loose.push(problem.message);
  }
  showBanner(bannerId, loose.join(" "));
  const first = problems.find((p) => p.id && $(p.id));
  if (first) $(first.id).focus();
}

function readLocation() {
  return {
    businessNumber: $("loc-business-number").value.trim(),
    active: $("loc-status").value === "active",
    test: $("loc-test").checked,
    beta: $("loc-beta").checked,
    frequency: { value: numberText("loc-frequency-value"), unit: $("loc-frequency-unit").value },
    nextRun: $("loc-next-run").value,
    fetchDelay: numberText("loc-fetch-delay"),
    names: $("loc-names").value,
    excludedTypes: $("loc-excluded-types").value,
    clinikoKey: $("loc-cliniko-key").value,
    birdeyeKey: $("loc-birdeye-key").value,
    removeClinikoKey: $("loc-cliniko-key-remove").checked,
    removeBirdeyeKey: $("loc-birdeye-key-remove").checked,
  };
}

// One location's request body, the inputs its parts came from, and every rule it breaks.
function locationRequest(loc, { mode, groupId, mapping }) {
  const keys = state.rules.keys;
  const check = new Check();
  const properties = [];
  const fieldMap = {
    businessNumber: "loc-business-number",
    integrationProperties: "loc-names",
    active: "loc-status",
    test: "loc-test",
    beta: "loc-beta",
    frequency: "loc-frequency-value",
    "frequency.value": "loc-frequency-value",
    "frequency.unit": "loc-frequency-unit",
    nextRunTime: "loc-next-run",
  };
  const removals = [];
  const add = (key, value, id) => {
    fieldMap[`integrationProperties[${properties.length}]`] = id;
    properties.push({ propertyKey: key, propertyValue: value, isSecure: key.endsWith(".api.key") });
  };
  const remove = (key, id) => {
    fieldMap[`removePropertyKeys[${removals.length}]`] = id;
    removals.push(key);
  };

  const number = mode === "edit" ? loc.businessNumber : checkBusinessNumber(loc.businessNumber, "loc-business-number", check);
  const names = loc.names.split(",").map((n) => n.trim());
  if (names.some((n) => !n)) check.fail("loc-names", "must be one or more comma-separated Cliniko business names, none blank");
  add(keys.locationName, names.join(", "), "loc-names");
  const excluded = loc.excludedTypes.trim() ? loc.excludedTypes.split(",").map((n) => n.trim()) : [];
  if (excluded.some((n) => !n)) check.fail("loc-excluded-types", "must be comma-separated Cliniko appointment type names, none blank");
  if (excluded.length) add(keys.excludedTypes, excluded.join(", "), "loc-excluded-types");
  else if (mapping && own(mapping, keys.excludedTypes)) remove(keys.excludedTypes, "loc-excluded-types");
  if (loc.fetchDelay !== "") {
    add(keys.fetchDelay, checkInteger(keys.fetchDelay, loc.fetchDelay, "loc-fetch-delay", check), "loc-fetch-delay");
  } else if (mapping && own(mapping, keys.fetchDelay)) {
    remove(keys.fetchDelay, "loc-fetch-delay");
  }
  for (const [key, value, removing, id] of [
    [keys.clinikoApiKey, loc.clinikoKey, loc.removeClinikoKey, "loc-cliniko-key"],
    [keys.birdeyeApiKey, loc.birdeyeKey, loc.removeBirdeyeKey, "loc-birdeye-key"],
  ]) {
    if (value && removing) check.fail(id, "give a new key or remove the override, not both");
    else if (value) {
      checkApiKey(key, value, id, check);
      add(key, value, id);
    } else if (removing) remove(key, `${id}-remove`);
  }
  const unit = loc.frequency.unit;
  const max = state.rules.maxFrequency[unit];
  const every = loc.frequency.value;
  if (!/^[0-9]+$/.test(every) || Number(every) < 1 || Number(every) > max) {
    check.fail("loc-frequency-value", `must be a whole number from 1 to ${max} (${unit})`);
  }
  const nextRunTime = runTimeIso(loc.nextRun);
  if (!nextRunTime) check.fail("loc-next-run", "must be a date and time (UTC)");
  else if (Number(nextRunTime.slice(0, 4)) < 2000 || Number(nextRunTime.slice(0, 4)) > 2999) {
    check.fail("loc-next-run", "must be a time between the years 2000 and 2999");
  }

  const body = {
    integrationProperties: properties,
    active: loc.active,
    test: loc.test,
    beta: loc.beta,
    frequency: { value: Number(every), unit },
    nextRunTime,
  };
  if (mode === "edit") {
    if (removals.length) body.removePropertyKeys = removals;
  } else {
    Object.assign(body, { businessNumber: number, integrationGroupId: groupId });
  }
  return { body, fieldMap, problems: check.problems, businessNumber: number };
}

async function submitLocation(event) {
  event.preventDefault();
  const context = state.drawer;
  const form = $("location-form");
  clearErrors(form);
  showBanner("drawer-error", "");
  const loc = readLocation();
  const request = locationRequest(loc, { mode: context.mode, groupId: context.group?.groupId, mapping: context.mapping });
  if (context.mode === "pending") {
    const others = wizard.locations.filter((l) => l !== context.location);
    if (others.some((l) => l.businessNumber === request.businessNumber)) {
      request.problems.push({ id: "loc-business-number", message: "is already in this integration's locations" });
    }
  }
  if (request.problems.length) {
    showProblems(request.problems, "drawer-error");
    return;
  }
  if (context.mode === "pending") {
    const saved = Object.assign(context.location ?? { id: wizard.nextId++, saved: false }, loc, {
      businessNumber: request.businessNumber,
      errors: [],
    });
    if (!context.location) wizard.locations.push(saved);
    closeDialog();
    renderPendingLocations();
    say(`Location ${saved.businessNumber} added to this integration; it is not saved yet.`);
    ($("add-location").disabled ? $("wizard-next") : $("add-location")).focus();
    return;
  }
  const submit = $("location-submit");
  submit.disabled = true;
  try {
    if (context.mode === "edit") await api("PATCH", `/admin/mappings/${context.mapping.businessNumber}`, request.body);
    else await api("PUT", "/integration/add/businessintegrationmapping", request.body);
  } catch (error) {
    if (error instanceof ApiError) {
      const { placed, unplaced } = placeProblems(error.problems, request.fieldMap);
      showProblems([...placed, ...unplaced.map((message) => ({ id: null, message }))], "drawer-error");
    } else if (error instanceof NetworkError) {
      showBanner("drawer-error", `${error.message}; nothing is known to be saved. Saving again is safe.`);
    }
    return;
  } finally {
    submit.disabled = false;
  }
  const number = request.businessNumber;
  closeDialog();
  await loadList();
  say(context.mode === "edit" ? `Location ${number} saved.` : `Location ${number} added to group ${context.group.groupId}.`);
  document.querySelector(`[data-key="edit-${number}"]`)?.focus();
}

// -- trigger drawer ---------------------------------------------------------------------------------------

async function openTriggerDrawer(group, opener) {
  let catalogue;
  try {
    catalogue = await triggersOf(group.integrationSourceType.id);
  } catch (error) {
    if (!(error instanceof SignInRequired)) say(`Could not load the triggers: ${error.message}`);
    return;
  }
  state.drawer = { group, catalogue };
  const form = $("trigger-form");
  form.reset();
  clearErrors(form);
  showBanner("trigger-drawer-error", "");
  $("trigger-drawer-title").textContent = `Triggers of group ${group.groupId}`;
  const current = new Set(group.integrationGroupTriggers.map((t) => t.triggerId));
  $("trigger-current").textContent = `Now: ${group.integrationGroupTriggers.map((t) => t.triggerId).join(", ") || "none"}.`;
  const fieldset = $("trigger-drawer-choices");
  fieldset.replaceChildren(
    h("legend", {}, "Triggers of this CRM"),
    ...catalogue.map((t) =>
      h("label", {}, h("input", { type: "checkbox", value: t.id, checked: current.has(t.id) }), ` ${t.displayName} (${t.id}) — ${t.description}`),
    ),
  );
  openDialog($("trigger-drawer"), opener);
}

async function submitTriggers(event) {
  event.preventDefault();
  const { group, catalogue } = state.drawer;
  clearErrors($("trigger-form"));
  showBanner("trigger-drawer-error", "");
  const chosen = [...$("trigger-drawer-choices").querySelectorAll("input:checked")].map((input) =>
    catalogue.find((t) => t.id === Number(input.value)),
  );
  if (!chosen.length) {
    showFieldError("trigger-drawer-choices", "choose at least one trigger");
    return;
  }
  const replace = document.querySelector("input[name=trigger-mode]:checked").value === "replace";
  const body = {
    groupId: group.groupId,
    integrationGroupTriggers: chosen.map((t) => ({ triggerId: t.id, triggerTypeId: t.integrationTriggerType.id })),
  };
  try {
    await api("POST", `/integration/update/businessintegrationgroup?replaceTriggers=${replace}`, body);
  } catch (error) {
    if (error instanceof ApiError) {
      const { placed, unplaced } = placeProblems(error.problems, { integrationGroupTriggers: "trigger-drawer-choices" });
      showProblems([...placed, ...unplaced.map((message) => ({ id: null, message }))], "trigger-drawer-error");
    } else if (error instanceof NetworkError) showBanner("trigger-drawer-error", error.message);
    return;
  }
  closeDialog();
  await loadList();
  say(`Triggers of group ${group.groupId} ${replace ? "replaced" : "added"}.`);
}

// -- add-integration wizard -------------------------------------------------------------------------------

function wizardKind() {
  return document.querySelector("input[name=g-kind]:checked").value;
}

function startWizard() {
  if (!(wizard.groupId && wizard.locations.some((l) => !l.saved))) {
    wizard = freshWizard();
    for (const id of ["g-parent", "g-cliniko-key", "g-birdeye-key", "g-cooloff", "crm-search"]) $(id).value = "";
    $("g-fetch-delay").value = "0";
    document.querySelector("input[name=g-kind][value=smb]").checked = true;
    showBanner("wizard-banner", "");
    clearErrors($("wizard-view"));
  }
  showView("wizard");
  renderCrmChoices();
  onKindChange();
  renderPendingLocations();
  showStep(wizard.groupId ? STEPS.indexOf("locations") : wizard.step);
}

function lockGroupSteps() {
  const locked = wizard.groupId !== null;
  for (const section of document.querySelectorAll(".step[data-step=crm], .step[data-step=trigger], .step[data-step=properties]")) {
    for (const input of section.querySelectorAll("input")) input.disabled = locked || (input.dataset.fixed === "true");
  }
}

async function showStep(index) {
  wizard.step = index;
  const name = STEPS[index];
  // Messages about an earlier moment ("Location … added", "Nothing was saved: …") go when the step changes;
  // a caller with news for the new step shows it after this. A partial save is told again from the state.
  say("");
  showBanner("wizard-banner", name === "locations" ? partialBanner() : "");
  if (name === "trigger") await renderTriggerChoices();
  if (name === "review") renderReview();
  for (const section of document.querySelectorAll(".step")) section.hidden = section.dataset.step !== name;
  for (const item of document.querySelectorAll("#steps li")) {
    const position = STEPS.indexOf(item.dataset.step);
    item.classList.toggle("done", position < index);
    if (position === index) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  lockGroupSteps();
  $("wizard-back").hidden = index === 0 || (wizard.groupId !== null && index <= STEPS.indexOf("locations"));
  $("wizard-next").hidden = name === "review";
  $("wizard-save").hidden = name !== "review";
  $("wizard-save").textContent = wizard.groupId ? "Save remaining locations" : "Save";
  $(`step-${name}-title`).focus();
}

function renderCrmChoices() {
  const query = $("crm-search").value.trim().toLowerCase();
  const matches = state.rules.sources.filter((s) =>
    [s.integrationSource, s.sourceCategory, s.integrationType].some((text) => text.toLowerCase().includes(query)),
  );
  $("crm-results").replaceChildren(
    h("legend", {}, "Matching CRMs"),
    ...(matches.length
      ? matches.map((s) =>
          h(
            "label",
            {},
            h("input", { type: "radio", name: "crm", value: s.id, checked: wizard.source?.id === s.id, onchange: () => (wizard.source = s) }),
            ` ${sourceName(s)} — ${s.sourceCategory}, ${s.integrationType}, ${s.integrationPlan}`,
          ),
        )
      : [h("p", { class: "muted" }, `No CRM matches "${query}".`)]),
  );
}

async function renderTriggerChoices() {
  let catalogue = [];
  try {
    catalogue = await triggersOf(wizard.source.id);
  } catch (error) {
    if (!(error instanceof SignInRequired)) showFieldError("trigger-choices", `could not load the triggers: ${error.message}`);
  }
  const only = catalogue.length === 1;
  if (only) wizard.triggers = [catalogue[0]];
  const chosen = new Set(wizard.triggers.map((t) => t.id));
  $("trigger-choices").replaceChildren(
    h("legend", {}, "Triggers"),
    ...catalogue.map((t) =>
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          value: t.id,
          checked: chosen.has(t.id),
          disabled: only,
          "data-fixed": only ? "true" : null,
          onchange: (e) => {
            wizard.triggers = e.target.checked ? [...wizard.triggers, t] : wizard.triggers.filter((x) => x.id !== t.id);
          },
        }),
        ` ${t.displayName} — ${t.description} (id ${t.id}, ${t.integrationTriggerType.name})`,
      ),
    ),
  );
}

function onKindChange() {
  const smb = wizardKind() === "smb";
  $("g-parent-label").textContent = smb ? "Business ID" : "Enterprise ID";
  $("g-parent-hint").textContent = smb
    ? "From Birdeye: Settings › Integrations › API."
    : "From Birdeye: Settings › Profile › Business Profiles.";
  $("locations-hint").textContent = smb
    ? "A single-location (SMB) account has one location: its Business ID."
    : "Add every location of the enterprise with its own Business ID.";
  renderPendingLocations();
}

// The group request, the inputs its parts came from, and every rule it breaks.
function groupRequest() {
  const keys = state.rules.keys;
  const check = new Check();
  const properties = [];
  const fieldMap = {
    parentBusinessNumber: "g-parent",
    integrationSourceId: "crm-search",
    integrationGroupTriggers: "trigger-choices",
    integrationGroupProperties: "g-cliniko-key",
  };
  const add = (key, value, id) => {
    fieldMap[`integrationGroupProperties[${properties.length}]`] = id;
    properties.push({ propertyKey: key, propertyValue: value, isSecure: key.endsWith(".api.key") });
  };
  const parent = checkBusinessNumber($("g-parent").value, "g-parent", check);
  const clinikoKey = $("g-cliniko-key").value;
  checkApiKey(keys.clinikoApiKey, clinikoKey, "g-cliniko-key", check);
  add(keys.clinikoApiKey, clinikoKey, "g-cliniko-key");
  const birdeyeKey = $("g-birdeye-key").value;
  if (birdeyeKey) {
    checkApiKey(keys.birdeyeApiKey, birdeyeKey, "g-birdeye-key", check);
    add(keys.birdeyeApiKey, birdeyeKey, "g-birdeye-key");
  }
  const delay = numberText("g-fetch-delay");
  add(keys.fetchDelay, checkInteger(keys.fetchDelay, delay === "" ? "0" : delay, "g-fetch-delay", check), "g-fetch-delay");
  const cooloff = numberText("g-cooloff");
  if (cooloff !== "") add(keys.cooloffDays, checkInteger(keys.cooloffDays, cooloff, "g-cooloff", check), "g-cooloff");
  const body = {
    parentBusinessNumber: parent,
    integrationSourceId: wizard.source?.id,
    integrationGroupProperties: properties,
    integrationGroupTriggers: wizard.triggers.map((t) => ({ triggerId: t.id, triggerTypeId: t.integrationTriggerType.id })),
  };
  return { body, fieldMap, problems: check.problems, parent };
}

function stepProblems(name) {
  const problems = [];
  if (name === "crm" && !wizard.source) problems.push({ id: "crm-search", message: "search for the CRM and select it" });
  if (name === "trigger" && !wizard.triggers.length) problems.push({ id: "trigger-choices", message: "choose at least one trigger" });
  if (name === "properties" && !wizard.groupId) problems.push(...groupRequest().problems);
  if (name === "locations") problems.push(...locationProblems());
  return problems;
}

// Every location checked again as it will be sent (an SMB's location is its parent business).
function locationProblems() {
  const problems = [];
  const unsaved = wizard.locations.filter((l) => !l.saved);
  if (!wizard.locations.length) problems.push({ id: "pending-locations", message: "add at least one location" });
  if (wizardKind() === "smb") {
    if (wizard.locations.length > 1) problems.push({ id: "pending-locations", message: "a single-location (SMB) account has one location; remove the others or choose Enterprise" });
    for (const loc of unsaved) loc.businessNumber = $("g-parent").value.trim();
  }
  const seen = new Set();
  for (const loc of wizard.locations) {
    const request = locationRequest(loc, { mode: "pending", groupId: wizard.groupId ?? 0 });
    loc.errors = loc.saved ? [] : [...request.problems];
    if (seen.has(request.businessNumber)) loc.errors.push({ id: "loc-business-number", message: "is already in this integration's locations" });
    seen.add(request.businessNumber);
  }
  const broken = unsaved.filter((l) => l.errors.length);
  if (broken.length) problems.push({ id: "pending-locations", message: `fix ${broken.map((l) => l.businessNumber || "the new location").join(", ")} (open it with Edit)` });
  return problems;
}

function renderPendingLocations() {
  const list = $("pending-locations");
  const smb = wizardKind() === "smb";
  list.replaceChildren(
    ...wizard.locations.map((loc) =>
      h(
        "li",
        { class: loc.saved ? "saved" : loc.errors?.length ? "failed" : "", "data-business-number": loc.businessNumber },
        h(
          "div",
          {},
          h("strong", {}, loc.businessNumber || "(new)"),
          ` — ${loc.names} · ${loc.active ? "active" : "inactive"}${loc.test ? " · test" : ""}${loc.beta ? " · beta" : ""} · every ${plural(Number(loc.frequency.value), loc.frequency.unit)} · next run ${runText(runTimeIso(loc.nextRun))}`,
          loc.fetchDelay !== "" ? ` · fetch delay ${plural(Number(loc.fetchDelay), "days")}` : "",
          loc.clinikoKey ? ` · own Cliniko key ${mask(loc.clinikoKey)}` : "",
          loc.birdeyeKey ? ` · own Birdeye key ${mask(loc.birdeyeKey)}` : "",
          loc.saved ? [" ", badge("saved", "on")] : null,
          !loc.saved && loc.errors?.length
            ? h("ul", { class: "location-errors" }, loc.errors.map((e) => h("li", {}, `${e.id ? `${labelOf(e.id)}: ` : ""}${e.message}`)))
            : null,
        ),
        loc.saved
          ? null
          : h(
              "span",
              { class: "row-actions" },
              h("button", { type: "button", "data-key": `pending-edit-${loc.id}`, "aria-label": `Edit location ${loc.businessNumber}`, onclick: (e) => openLocationDrawer({ mode: "pending", location: loc }, e.currentTarget) }, "Edit"),
              h("button", { type: "button", class: "danger", "aria-label": `Remove location ${loc.businessNumber}`, onclick: () => removePending(loc) }, "Remove"),
            ),
      ),
    ),
  );
  $("add-location").disabled = smb && wizard.locations.length >= 1;
}

function removePending(loc) {
  wizard.locations = wizard.locations.filter((l) => l !== loc);
  renderPendingLocations();
  say(`Location ${loc.businessNumber} removed.`);
  ($("add-location").disabled ? $("wizard-next") : $("add-location")).focus();
}

// The review shows every value Save writes, as it will be written (keys masked), and is built again each time
// the step is shown, so it never outlives a change made on an earlier step or a save that failed.
let reviewSeq = 0;

function renderReview() {
  const seq = ++reviewSeq;
  const keys = state.rules.keys;
  const group = groupRequest();
  const groupProps = Object.fromEntries(group.body.integrationGroupProperties.map((p) => [p.propertyKey, p.propertyValue]));
  const smb = wizardKind() === "smb";
  const unsaved = wizard.locations.filter((l) => !l.saved);
  let summary;
  if (wizard.groupId) {
    summary = `Integration group ${wizard.groupId} is saved. “Save remaining locations” writes the ${plural(unsaved.length, "locations")} marked “not saved” below; nothing else changes.`;
  } else if (wizard.groupUnknown) {
    summary = `The answer to saving the integration group was lost: it may or may not be saved. Save again is safe; it writes what is shown below once.`;
  } else {
    summary = `Nothing is saved yet. Save writes the integration group and the ${plural(unsaved.length, "locations")} below, exactly as shown.`;
  }
  const cooloff = groupProps[keys.cooloffDays];
  const groupRows = [
    ["CRM", wizard.source ? sourceName(wizard.source) : "—"],
    ["Trigger", wizard.triggers.map((t) => t.displayName).join(", ") || "—"],
    ["Account", smb ? "SMB (single location)" : "Enterprise (multi-location)"],
    [smb ? "Business ID" : "Enterprise ID", group.parent ?? ""],
    ["Cliniko API key", groupProps[keys.clinikoApiKey] ? mask(groupProps[keys.clinikoApiKey]) : "—"],
    ["Birdeye API key", groupProps[keys.birdeyeApiKey] ? mask(groupProps[keys.birdeyeApiKey]) : "none"],
    ["Customer fetch delay", plural(Number(groupProps[keys.fetchDelay] ?? 0), "days")],
    ["Cool-off", cooloff === undefined ? "off" : plural(Number(cooloff), "days")],
    ["Catch-up", `${plural(state.rules.defaultCatchupDays, "days")} (the registry's default)`],
  ];
  if (wizard.groupId) groupRows.push(["Integration group", `saved as group ${wizard.groupId}`]);
  const columns = ["Business ID", "Location names", "Status", "Test", "Beta", "Frequency", "Next run", "Fetch delay", "Overrides", "Saved"];
  const rows = wizard.locations.map((loc) => {
    const overrides = [
      loc.clinikoKey ? `Cliniko API key ${mask(loc.clinikoKey)}` : null,
      loc.birdeyeKey ? `Birdeye API key ${mask(loc.birdeyeKey)}` : null,
    ].filter(Boolean);
    const cells = [
      h("th", { scope: "row" }, loc.businessNumber),
      h("td", {}, loc.names.split(",").map((n) => n.trim()).join(", ")),
      h("td", {}, loc.active ? "active" : "inactive"),
      h("td", {}, loc.test ? "yes (dry run)" : "no"),
      h("td", {}, loc.beta ? "yes" : "no"),
      h("td", { class: "nowrap" }, `every ${plural(Number(loc.frequency.value), loc.frequency.unit)}`),
      h("td", { class: "nowrap next-run" }, runText(runTimeIso(loc.nextRun))),
      h("td", {}, loc.fetchDelay !== "" ? `${plural(Number(loc.fetchDelay), "days")} (override)` : `${plural(Number(groupProps[keys.fetchDelay] ?? 0), "days")} (group)`),
      h("td", { class: "keys" }, overrides.length ? overrides.map((o) => h("span", { class: "key" }, o)) : "none: the group's keys"),
      h("td", {}, loc.saved ? badge("saved", "on") : "not saved"),
    ];
    cells.forEach((cell, index) => {
      cell.setAttribute("data-label", columns[index]);
      cell.replaceChildren(h("span", { class: "value" }, [...cell.childNodes]));
    });
    return h("tr", { "data-location": loc.businessNumber }, cells);
  });
  $("review").replaceChildren(
    h("p", { id: "review-summary" }, summary),
    h("h4", {}, "Integration group"),
    h("dl", { class: "facts" }, groupRows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("h4", {}, "Locations"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "mappings", id: "review-locations" },
        h("caption", { class: "visually-hidden" }, "Locations to save"),
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
    ),
    h("div", { id: "review-warnings", class: "warnings", hidden: true }),
  );
  showReviewWarnings(seq, unsaved);
}

async function showReviewWarnings(seq, unsaved) {
  let found;
  try {
    found = await Promise.all(unsaved.map((loc) => catchUpOf(catchUpInput(loc, { mode: "pending" }))));
  } catch {
    return;
  }
  if (seq !== reviewSeq) return; // the review was built again meanwhile
  const past = unsaved.map((loc, index) => [loc, found[index]]).filter(([, answer]) => answer?.message);
  const box = $("review-warnings");
  box.replaceChildren(
    h("h4", {}, "Next run times in the past"),
    h("ul", {}, past.map(([loc, answer]) => h("li", { "data-location": loc.businessNumber }, h("strong", {}, loc.businessNumber), `: ${answer.message}`))),
  );
  box.hidden = !past.length;
  for (const [loc] of past) {
    document.querySelector(`#review-locations tr[data-location="${loc.businessNumber}"] .next-run .value`)?.append(" ", badge("in the past", "override"));
  }
}

// What a partial save left: shown on the Locations step for as long as it is true.
function partialBanner() {
  const unsaved = wizard.locations.filter((l) => !l.saved);
  if (!wizard.groupId || !unsaved.length) return "";
  const saved = wizard.locations.filter((l) => l.saved).map((l) => l.businessNumber);
  return [
    h("strong", {}, "Saved in part. "),
    `Saved: integration group ${wizard.groupId}${saved.length ? ` and ${saved.length === 1 ? "location" : "locations"} ${saved.join(", ")}` : ""}. `,
    `Not saved: ${unsaved.map((l) => l.businessNumber).join(", ")}. `,
    "Fix the locations marked below (Edit), then press Next and “Save remaining locations”. What is saved stays saved.",
  ];
}

function goToProblem(problems) {
  const first = problems.find((p) => p.id && $(p.id));
  if (!first) return;
  const section = $(first.id).closest(".step");
  if (section && section.hidden) showStep(STEPS.indexOf(section.dataset.step));
  for (const p of problems) if (p.id && $(p.id)) showFieldError(p.id, p.message);
  $(first.id).focus();
}

async function wizardNext() {
  clearErrors($("wizard-view"));
  const name = STEPS[wizard.step];
  const problems = stepProblems(name);
  renderPendingLocations();
  if (problems.length) {
    goToProblem(problems);
    return;
  }
  await showStep(wizard.step + 1);
}

async function saveWizard() {
  clearErrors($("wizard-view"));
  showBanner("wizard-banner", "");
  say("");
  for (const name of STEPS.slice(0, 4)) {
    const problems = stepProblems(name);
    if (problems.length) {
      renderPendingLocations();
      goToProblem(problems);
      return;
    }
  }
  const save = $("wizard-save");
  save.disabled = true;
  try {
    await saveAll();
  } catch (error) {
    if (!(error instanceof SignInRequired)) showBanner("wizard-banner", `Nothing more was saved: ${error.message}. Saving again is safe.`);
  } finally {
    save.disabled = false;
  }
}

async function saveAll() {
  const group = wizard.groupId ? null : groupRequest();
  const unsaved = wizard.locations.filter((l) => !l.saved);

  // Read-only look-ups first: a parent that already has a group, or a location already mapped, would make a
  // later write fail after an earlier one succeeded.
  if (group && !wizard.groupUnknown) {
    const existing = await findGroupOf(group.parent);
    if (existing && existing.parentBusinessNumber === group.parent) {
      goToProblem([{ id: "g-parent", message: ERROR_WORDS.group_exists({ groupId: existing.groupId }) }]);
      showBanner("wizard-banner", "Nothing was saved.");
      return;
    }
  }
  const taken = await Promise.all(unsaved.map((l) => api("GET", `/admin/mappings?businessNumber=${l.businessNumber}`)));
  unsaved.forEach((loc, index) => {
    const mapping = taken[index].mappings[0];
    loc.errors = mapping ? [{ id: "loc-business-number", message: ERROR_WORDS.mapping_exists(mapping) }] : [];
  });
  if (unsaved.some((l) => l.errors.length)) {
    renderPendingLocations();
    await showStep(STEPS.indexOf("locations"));
    showBanner("wizard-banner", "Nothing was saved: some locations are already mapped.");
    return;
  }

  if (group) {
    try {
      wizard.groupId = (await api("PUT", "/integration/add/businessintegrationgroup", group.body)).groupId;
      wizard.groupUnknown = false;
    } catch (error) {
      if (error instanceof SignInRequired) throw error;
      if (error instanceof ApiError) {
        const { placed, unplaced } = placeProblems(error.problems, group.fieldMap);
        goToProblem(placed);
        showBanner("wizard-banner", `Nothing was saved. ${unplaced.join(" ")}`.trim());
      } else {
        wizard.groupUnknown = true;
        showBanner("wizard-banner", `${error.message}; the group may or may not be saved. Saving again is safe.`);
      }
      return;
    }
  }

  for (const loc of unsaved) {
    const request = locationRequest(loc, { mode: "pending", groupId: wizard.groupId });
    try {
      await api("PUT", "/integration/add/businessintegrationmapping", request.body);
      loc.saved = true;
      loc.errors = [];
    } catch (error) {
      if (error instanceof SignInRequired) throw error;
      if (error instanceof ApiError) {
        const { placed, unplaced } = placeProblems(error.problems, request.fieldMap);
        loc.errors = [...placed, ...unplaced.map((message) => ({ id: null, message }))];
      } else {
        loc.errors = [{ id: null, message: `${error.message}; it may or may not be saved. Saving again is safe.` }];
      }
    }
  }

  const saved = wizard.locations.filter((l) => l.saved).map((l) => l.businessNumber);
  const failed = wizard.locations.filter((l) => !l.saved);
  renderPendingLocations();
  if (!failed.length) {
    const groupId = wizard.groupId;
    wizard = freshWizard();
    $("review").replaceChildren();
    showView("list");
    await loadList();
    say(`Integration group ${groupId} saved with ${saved.length === 1 ? "location" : "locations"} ${saved.join(", ")}.`);
    document.querySelector(`[data-group-id="${groupId}"] h3`)?.scrollIntoView();
    $("list-title").focus();
    return;
  }
  await showStep(STEPS.indexOf("locations"));
}

// -- start ------------------------------------------------------------------------------------------------

async function start() {
  state.rules = await (await fetch("/dashboard/rules.json", { cache: "no-store" })).json();
  $("login-form").addEventListener("submit", signIn);
  $("location-form").addEventListener("submit", submitLocation);
  $("trigger-form").addEventListener("submit", submitTriggers);
  $("loc-history-more").addEventListener("click", loadHistory);
  for (const id of ["loc-next-run", "loc-frequency-value", "loc-frequency-unit", "loc-status", "loc-fetch-delay"]) {
    $(id).addEventListener("input", updateDrawerWarning);
    $(id).addEventListener("change", updateDrawerWarning);
  }
  for (const button of document.querySelectorAll("[data-close]")) button.addEventListener("click", closeDialog);
  $("backdrop").addEventListener("click", closeDialog);
  document.addEventListener("keydown", onKeydown);
  $("filter").addEventListener("input", renderList);
  $("nav-list").addEventListener("click", async () => {
    showView("list");
    await loadList();
    $("list-title").focus();
  });
  $("nav-add").addEventListener("click", startWizard);
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
    say("Signed out.");
  });
  $("crm-search").addEventListener("input", renderCrmChoices);
  $("crm-search").addEventListener("keydown", (event) => {
    const radios = $("crm-results").querySelectorAll("input[type=radio]");
    if (event.key === "Enter" && radios.length === 1) {
      event.preventDefault();
      radios[0].checked = true;
      radios[0].dispatchEvent(new Event("change"));
      wizardNext();
    }
  });
  for (const radio of document.querySelectorAll("input[name=g-kind]")) radio.addEventListener("change", onKindChange);
  $("add-location").addEventListener("click", (e) => openLocationDrawer({ mode: "pending" }, e.currentTarget));
  $("wizard-next").addEventListener("click", wizardNext);
  $("wizard-back").addEventListener("click", () => showStep(wizard.step - 1));
  $("wizard-save").addEventListener("click", saveWizard);
  $("wizard-cancel").addEventListener("click", async () => {
    showView("list");
    await loadList();
    say(wizard.groupId ? `Group ${wizard.groupId} is saved; its unsaved locations wait under Add Integration.` : "Nothing was saved.");
  });
  showView("list");
  await loadList();
  document.body.dataset.ready = "true";
}

start();
