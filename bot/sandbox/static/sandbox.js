/* opsgate sandbox: a small Slack client for the local fake of Slack. Vanilla JS, no build. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    personas: $("personas"), messages: $("messages"), empty: $("empty"), composer: $("composer"),
    composerForm: $("composer-form"), status: $("status"), thread: $("thread"),
    threadMessages: $("thread-messages"), threadForm: $("thread-form"),
    threadComposer: $("thread-composer"), threadClose: $("thread-close"), conn: $("conn"),
    channels: $("channels"), channelName: $("channel-name"), overlay: $("overlay"),
    modalTitle: $("modal-title"), modalBody: $("modal-body"), modalForm: $("modal-form"),
    modalError: $("modal-error"), modalSubmit: $("modal-submit"), modalCancel: $("modal-cancel"),
    modalX: $("modal-x"), app: $("app"), navToggle: $("nav-toggle"), scrim: $("scrim"),
  };

  /* One id per page load: the sandbox shows this load only the ephemeral messages posted since
     it first asked, so a reload starts without them, as in Slack. */
  const session = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;

  let state = null;
  let acting = new URLSearchParams(location.search).get("as") || localStorage.getItem("opsgate.sandbox.as");
  let channelId = null;
  let openThread = null; // ts of the thread root shown in the pane
  let autoOpened = new Set(); // roots whose thread was opened for the user already
  let followNext = false; // after a slash command: open the next new thread, even over another
  let shownView = null; // `${id}:${hash}` of the modal on screen
  const known = new Map(); // ts -> edited ts / reply count, to flash what changed
  let firstRender = true;

  // ---------------------------------------------------------------- text: Slack mrkdwn

  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", fire: "🔥",
    rotating_light: "🚨", hourglass: "⌛", hourglass_flowing_sand: "⏳", tada: "🎉", eyes: "👀",
    rocket: "🚀", no_entry: "⛔", no_entry_sign: "🚫", money_with_wings: "💸", moneybag: "💰",
    mag: "🔍", robot_face: "🤖", wave: "👋", "+1": "👍", thumbsup: "👍", "-1": "👎",
    thumbsdown: "👎", large_green_circle: "🟢", large_yellow_circle: "🟡",
    large_orange_circle: "🟠", red_circle: "🔴", white_circle: "⚪", information_source: "ℹ️",
    bulb: "💡", lock: "🔒", clipboard: "📋", chart_with_upwards_trend: "📈", stopwatch: "⏱️",
    sos: "🆘", construction: "🚧", pager: "📟", heavy_plus_sign: "➕", leftwards_arrow_with_hook: "↩️",
    raised_hand: "✋", raising_hand: "🙋", arrow_forward: "▶️", black_right_pointing_double_triangle_with_vertical_bar: "⏭",
    ok_hand: "👌", pray: "🙏", boom: "💥", zap: "⚡", hammer_and_wrench: "🛠️", gear: "⚙️",
    speech_balloon: "💬", bell: "🔔", calendar: "📅", link: "🔗", memo: "📝", stop_sign: "🛑",
  };

  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const unslack = (s) => String(s ?? "").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

  function userName(id) {
    const u = state && state.users[id];
    if (!u) return id;
    if (u.is_bot) return u.name;
    return u.real_name || u.name;
  }

  function formatDate(epoch, fmt, fallback) {
    const d = new Date(Number(epoch) * 1000);
    if (isNaN(d)) return esc(fallback);
    const time = d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
    const tokens = {
      "{time}": time,
      "{time_secs}": d.toLocaleTimeString(),
      "{date_num}": d.toISOString().slice(0, 10),
      "{date}": d.toLocaleDateString([], { month: "long", day: "numeric", year: "numeric" }),
      "{date_short}": d.toLocaleDateString([], { month: "short", day: "numeric", year: "numeric" }),
      "{date_long}": d.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
      "{date_pretty}": d.toLocaleDateString([], { month: "long", day: "numeric", year: "numeric" }),
      "{date_short_pretty}": d.toLocaleDateString([], { month: "short", day: "numeric", year: "numeric" }),
      "{date_long_pretty}": d.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    };
    const out = String(fmt).replace(/\{[a-z_]+\}/g, (t) => tokens[t] ?? t);
    return `<span class="date" title="${esc(d.toString())}">${esc(out)}</span>`;
  }

  /* One `<...>` entity of Slack's text format, as HTML. */
  function entity(inner) {
    const [target, ...rest] = inner.split("|");
    const label = rest.join("|");
    if (target.startsWith("@")) {
      const id = target.slice(1);
      const me = id === acting ? " me" : "";
      return `<span class="mention${me}" data-user="${esc(id)}">@${esc(unslack(label) || userName(id))}</span>`;
    }
    if (target.startsWith("#")) {
      const ch = state && state.channels.find((c) => c.id === target.slice(1));
      return `<span class="mention">#${esc(unslack(label) || (ch ? ch.name : target.slice(1)))}</span>`;
    }
    if (target.startsWith("!")) {
      const cmd = target.slice(1);
      if (cmd.startsWith("date^")) {
        const [, epoch, fmt] = cmd.split("^");
        return formatDate(epoch, fmt, unslack(label));
      }
      if (cmd.startsWith("subteam^")) return `<span class="mention">${esc(unslack(label) || "@group")}</span>`;
      return `<span class="mention broadcast">@${esc(unslack(label).replace(/^@/, "") || cmd)}</span>`;
    }
    const url = unslack(target);
    const safe = /^(https?:|mailto:)/i.test(url) ? url : null;
    const text = esc(unslack(label) || url.replace(/^mailto:/i, ""));
    return safe ? `<a href="${esc(safe)}" target="_blank" rel="noopener noreferrer">${text}</a>` : text;
  }

  /* Slack mrkdwn to HTML: code blocks, inline code, entities, *bold*, _italic_, ~strike~,
     > quotes, :emoji:, line breaks. Everything else is escaped. */
  function mrkdwn(src) {
    const slots = [];
    const slot = (html) => `\u0001${slots.push(html) - 1}\u0002`;
    let s = String(src ?? "");
    s = s.replace(/```\n?([\s\S]*?)\n?```/g, (_, code) => slot(`<pre>${esc(unslack(code))}</pre>`));
    s = s.replace(/`([^`\n]+)`/g, (_, code) => slot(`<code>${esc(unslack(code))}</code>`));
    s = s.replace(/<([^<>\n]+)>/g, (_, inner) => slot(entity(inner)));
    s = esc(unslack(s));
    const B = "(^|[\\s(\\u0002\\u0001>\"'.,;:!?-])";
    const E = "(?=$|[\\s).,;:!?'\"\\u0001\\u0002<-])";
    s = s.replace(new RegExp(`${B}\\*(?!\\s)([^*\\n]+?)\\*${E}`, "g"), "$1<b>$2</b>");
    s = s.replace(new RegExp(`${B}_(?!\\s)([^_\\n]+?)_${E}`, "g"), "$1<i>$2</i>");
    s = s.replace(new RegExp(`${B}~(?!\\s)([^~\\n]+?)~${E}`, "g"), "$1<s>$2</s>");
    s = s.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
    s = s.split("\n").map((line) => line.startsWith("&gt; ") || line === "&gt;" ? `<blockquote>${line.replace(/^&gt; ?/, "")}</blockquote>` : line).join("\n");
    s = s.replace(/\n/g, "<br>").replace(/<\/blockquote><br>/g, "</blockquote>");
    for (let i = 0; i < 3 && s.includes("\u0001"); i++) {
      s = s.replace(/\u0001(\d+)\u0002/g, (_, n) => slots[Number(n)]);
    }
    return s.replace(/<br>(<pre>)/g, "$1").replace(/(<\/pre>)<br>/g, "$1");
  }

  function textObject(obj) {
    if (!obj) return "";
    if (obj.type === "mrkdwn") return mrkdwn(obj.text);
    let t = esc(obj.text).replace(/\n/g, "<br>");
    if (obj.emoji !== false) t = t.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
    return t;
  }

  // ---------------------------------------------------------------- Block Kit

  function el(tag, cls, html) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (html !== undefined) node.innerHTML = html;
    return node;
  }

  function button(element, ctx) {
    const b = el("button", "btn" + (element.style ? ` ${element.style}` : ""), textObject(element.text));
    b.type = "button";
    b.dataset.testid = `button-${element.action_id}`;
    b.setAttribute("data-testid", `button-${element.action_id}`);
    if (!ctx || !ctx.message) { b.disabled = true; return b; }
    b.addEventListener("click", async () => {
      if (element.confirm) {
        const c = element.confirm;
        const question = [c.title && c.title.text, c.text && c.text.text].filter(Boolean).join("\n\n");
        if (!window.confirm(question || "Are you sure?")) return;
      }
      if (element.url) window.open(element.url, "_blank", "noopener");
      b.classList.add("busy");
      b.disabled = true;
      const res = await act("/sandbox/click", {
        user: acting, channel: ctx.message.channel, ts: ctx.message.ts,
        action_id: element.action_id, block_id: ctx.block.block_id, value: element.value ?? "",
      }, `clicked “${element.text ? element.text.text : element.action_id}”`);
      b.classList.remove("busy");
      b.disabled = false;
      return res;
    });
    return b;
  }

  function element(elem, ctx) {
    if (!elem) return el("span");
    if (elem.type === "button") return button(elem, ctx);
    if (elem.type === "image") {
      const img = el("img");
      img.src = elem.image_url || "";
      img.alt = elem.alt_text || "";
      img.title = elem.alt_text || "";
      return img;
    }
    const label = elem.placeholder ? elem.placeholder.text : elem.type.replace(/_/g, " ");
    const stub = el("button", "btn", `${esc(label)} ▾`);
    stub.type = "button";
    stub.disabled = true;
    stub.title = `${elem.type} is not interactive in the sandbox`;
    return stub;
  }

  function richText(block) {
    const inline = (items) => (items || []).map((it) => {
      if (it.type === "text") {
        let t = esc(it.text).replace(/\n/g, "<br>");
        const st = it.style || {};
        if (st.code) t = `<code>${t}</code>`;
        if (st.bold) t = `<b>${t}</b>`;
        if (st.italic) t = `<i>${t}</i>`;
        if (st.strike) t = `<s>${t}</s>`;
        return t;
      }
      if (it.type === "user") return entity(`@${it.user_id}`);
      if (it.type === "channel") return entity(`#${it.channel_id}`);
      if (it.type === "broadcast") return entity(`!${it.range}`);
      if (it.type === "link") return `<a href="${esc(it.url)}" target="_blank" rel="noopener noreferrer">${esc(it.text || it.url)}</a>`;
      if (it.type === "emoji") return it.unicode ? String.fromCodePoint(...it.unicode.split("-").map((h) => parseInt(h, 16))) : (EMOJI[it.name] || `:${esc(it.name)}:`);
      return "";
    }).join("");
    return (block.elements || []).map((part) => {
      if (part.type === "rich_text_section") return `<div>${inline(part.elements)}</div>`;
      if (part.type === "rich_text_preformatted") return `<pre>${inline(part.elements)}</pre>`;
      if (part.type === "rich_text_quote") return `<blockquote>${inline(part.elements)}</blockquote>`;
      if (part.type === "rich_text_list") {
        const tag = part.style === "ordered" ? "ol" : "ul";
        return `<${tag}>${(part.elements || []).map((e) => `<li>${inline(e.elements)}</li>`).join("")}</${tag}>`;
      }
      return "";
    }).join("");
  }

  function renderBlock(block, ctx) {
    const c = { ...ctx, block };
    switch (block.type) {
      case "header":
        return el("div", "bk-header", textObject(block.text));
      case "section": {
        const wrap = el("div", "bk-section");
        const main = el("div", "bk-section-main");
        if (block.text) main.appendChild(el("div", "text", textObject(block.text)));
        if (block.fields && block.fields.length) {
          const grid = el("div", "bk-fields");
          for (const f of block.fields) grid.appendChild(el("div", "text", textObject(f)));
          main.appendChild(grid);
        }
        wrap.appendChild(main);
        if (block.accessory) {
          const acc = el("div", "bk-accessory");
          acc.appendChild(element(block.accessory, c));
          wrap.appendChild(acc);
        }
        return wrap;
      }
      case "context": {
        const wrap = el("div", "bk-context");
        for (const item of block.elements || []) {
          if (item.type === "image") wrap.appendChild(element(item, c));
          else wrap.appendChild(el("span", "text", textObject(item)));
        }
        return wrap;
      }
      case "divider":
        return el("hr", "bk-divider");
      case "actions": {
        const wrap = el("div", "bk-actions");
        for (const item of block.elements || []) wrap.appendChild(element(item, c));
        return wrap;
      }
      case "image": {
        const wrap = el("div", "bk-image");
        if (block.title) wrap.appendChild(el("div", "img-title", textObject(block.title)));
        const img = el("img");
        img.src = block.image_url || "";
        img.alt = block.alt_text || "";
        wrap.appendChild(img);
        return wrap;
      }
      case "input":
        return renderInput(block);
      case "rich_text":
        return el("div", "text", richText(block));
      case "markdown":
        return el("div", "text", mrkdwn(block.text));
      default:
        return el("div", "bk-unsupported", `[${esc(block.type)} block]`);
    }
  }

  // One labelled box per option; the group carries the state keys, as a text input does.
  function renderCheckboxes(block, elem, id) {
    const group = el("div", "bk-checkboxes");
    group.id = id;
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", `${id}-label`);
    group.dataset.blockId = block.block_id;
    group.dataset.actionId = elem.action_id;
    group.dataset.type = elem.type;
    group.dataset.optional = block.optional ? "1" : "";
    group.setAttribute("data-testid", `input-${elem.action_id}`);
    const options = elem.options || [];
    group.bkOptions = options;
    const initial = new Set((elem.initial_options || []).map((o) => o.value));
    options.forEach((option, i) => {
      const row = el("label", "bk-checkbox");
      const box = el("input");
      box.type = "checkbox";
      box.value = option.value;
      box.checked = initial.has(option.value);
      box.dataset.index = String(i);
      box.setAttribute("data-testid", `checkbox-${elem.action_id}-${option.value}`);
      row.appendChild(box);
      const words = el("span", "bk-checkbox-text", textObject(option.text));
      if (option.description) words.appendChild(el("span", "hint", textObject(option.description)));
      row.appendChild(words);
      group.appendChild(row);
    });
    return group;
  }

  // What Slack puts in `state.values` for an element of the modal (block_id -> action_id ->
  // this), and whether it is empty (a required input left empty is not submitted).
  function inputState(input) {
    if (input.dataset.type === "checkboxes") {
      const selected = [...input.querySelectorAll('input[type="checkbox"]')]
        .filter((box) => box.checked)
        .map((box) => {
          const option = input.bkOptions[Number(box.dataset.index)];
          const picked = { text: option.text, value: option.value };
          if (option.description) picked.description = option.description;
          return picked;
        });
      return { empty: selected.length === 0, state: { type: "checkboxes", selected_options: selected } };
    }
    const value = input.value.trim() ? input.value : null;
    return { empty: value === null, state: { type: input.dataset.type, value } };
  }

  function renderInput(block) {
    const wrap = el("div", "bk-input");
    const elem = block.element || {};
    const id = `in-${block.block_id}-${elem.action_id}`;
    const label = el("label", "", `${textObject(block.label)}${block.optional ? ' <span class="optional">(optional)</span>' : ""}`);
    label.id = `${id}-label`;
    label.htmlFor = id;
    wrap.appendChild(label);
    const textual = ["plain_text_input", "email_text_input", "url_text_input", "number_input", "rich_text_input"];
    if (elem.type === "checkboxes") {
      label.removeAttribute("for"); // a group, not a form control: aria-labelledby names it
      wrap.appendChild(renderCheckboxes(block, elem, id));
    } else if (textual.includes(elem.type)) {
      const multiline = elem.multiline || elem.type === "rich_text_input";
      const input = el(multiline ? "textarea" : "input");
      input.id = id;
      if (multiline) input.rows = 4;
      else input.type = { email_text_input: "email", url_text_input: "url", number_input: "number" }[elem.type] || "text";
      if (elem.placeholder) input.placeholder = elem.placeholder.text;
      if (elem.max_length) input.maxLength = elem.max_length;
      if (elem.initial_value) input.value = elem.initial_value;
      input.dataset.blockId = block.block_id;
      input.dataset.actionId = elem.action_id;
      input.dataset.type = elem.type;
      input.dataset.optional = block.optional ? "1" : "";
      input.dataset.testid = `input-${elem.action_id}`;
      input.setAttribute("data-testid", `input-${elem.action_id}`);
      wrap.appendChild(input);
    } else {
      wrap.appendChild(element(elem, null));
    }
    if (block.hint) wrap.appendChild(el("div", "hint", textObject(block.hint)));
    wrap.appendChild(el("div", "field-error"));
    wrap.dataset.blockId = block.block_id;
    return wrap;
  }

  function renderBlocks(blocks, ctx) {
    const frag = el("div", "bk");
    for (const block of blocks) frag.appendChild(renderBlock(block, ctx));
    return frag;
  }

  // ---------------------------------------------------------------- messages

  function timeOf(m) {
    const when = m.seen_at ? new Date(m.seen_at * 1000) : new Date(Number(String(m.ts).split(".")[0]) * 1000);
    return when.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
  }

  function avatar(userId) {
    const u = state.users[userId] || {};
    if (userId === state.bot.user_id) return el("span", "avatar bot", "og");
    if (userId === "USLACKBOT") return el("span", "avatar slackbot", "S");
    const a = el("span", "avatar", esc((userName(userId) || "?").slice(0, 1).toUpperCase()));
    a.style.background = u.color || "#7a7a7a";
    return a;
  }

  function renderMessage(m, { compact = false, inThread = false } = {}) {
    const node = el("div", "msg" + (compact ? " compact" : "") + (m.is_ephemeral ? " ephemeral" : ""));
    node.dataset.ts = m.ts;
    node.setAttribute("data-testid", m.is_ephemeral ? "ephemeral" : "message");
    node.setAttribute("data-ts", m.ts);
    node.setAttribute("data-user", m.user);
    const gutter = el("div", "gutter");
    gutter.appendChild(avatar(m.user));
    gutter.appendChild(el("div", "mini-time", esc(timeOf(m))));
    node.appendChild(gutter);
    const body = el("div", "body");
    if (m.is_ephemeral) {
      const only = el("div", "only-you", '<span class="eye">👁</span><span>Only visible to you</span>');
      const dismiss = el("button", "dismiss", "Dismiss");
      dismiss.type = "button";
      dismiss.addEventListener("click", () => act("/sandbox/dismiss", { user: acting, ts: m.ts }, null));
      only.appendChild(dismiss);
      body.appendChild(only);
    }
    if (!compact) {
      const isBot = !!(state.users[m.user] && state.users[m.user].is_bot);
      const meta = el("div", "meta",
        `<span class="author">${esc(userName(m.user))}</span>` +
        (isBot ? '<span class="app-badge">App</span>' : "") +
        `<span class="time" title="ts ${esc(m.ts)}">${esc(timeOf(m))}</span>`);
      body.appendChild(meta);
    }
    const hasBlocks = Array.isArray(m.blocks) && m.blocks.length;
    if (hasBlocks) body.appendChild(renderBlocks(m.blocks, { message: m }));
    else body.appendChild(el("div", "text", mrkdwn(m.text)));
    if (m.is_edited) {
      const texts = body.querySelectorAll(".bk-section-main > .text, .body > .text, .bk > .text");
      const target = texts.length ? texts[texts.length - 1] : body;
      target.appendChild(el("span", "edited", " (edited)"));
    }
    if (!inThread && m.replies && m.replies.length) body.appendChild(threadSummary(m));
    node.appendChild(body);
    const mark = `${m.edited ? m.edited.ts : ""}`;
    if (!firstRender && (!known.has(m.ts) || known.get(m.ts) !== mark)) node.classList.add("flash");
    known.set(m.ts, mark);
    return node;
  }

  function threadSummary(m) {
    const btn = el("button", "thread-summary" + (openThread === m.ts ? " open" : ""));
    btn.type = "button";
    btn.setAttribute("data-testid", "thread-link");
    btn.dataset.ts = m.ts;
    const faces = el("span", "faces");
    const people = [...new Set(m.replies.map((r) => r.user))].slice(0, 4);
    for (const p of people) faces.appendChild(avatar(p));
    btn.appendChild(faces);
    const n = m.replies.length;
    btn.appendChild(el("span", "thread-link", `${n} ${n === 1 ? "reply" : "replies"}`));
    btn.appendChild(el("span", "thread-last", `Last reply ${esc(timeOf(m.replies[n - 1]))}`));
    btn.addEventListener("click", () => showThread(m.ts));
    return btn;
  }

  function byTs(a, b) { return a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0; }

  function currentChannel() {
    return state.channels.find((c) => c.id === channelId) || state.channels[0];
  }

  function myEphemerals(threadTs) {
    return ((state.ephemerals || {})[acting] || []).filter((e) => e.channel === channelId && (e.thread_ts || null) === (threadTs || null));
  }

  function nearBottom(node) { return node.scrollHeight - node.scrollTop - node.clientHeight < 80; }

  function fill(container, items, { inThread = false, startIndex = 0 } = {}) {
    const stick = nearBottom(container) || firstRender;
    const scroll = container.scrollTop;
    container.replaceChildren();
    let prev = null;
    items.forEach((m, i) => {
      const isCompact = i >= startIndex && prev && !prev.is_ephemeral && !m.is_ephemeral && prev.user === m.user &&
        !(prev.replies && prev.replies.length && !inThread) && !(m.blocks || []).some((b) => b.type === "header") &&
        Math.abs((m.seen_at || 0) - (prev.seen_at || 0)) < 300;
      container.appendChild(renderMessage(m, { compact: !!isCompact, inThread }));
      prev = m;
    });
    container.scrollTop = stick ? container.scrollHeight : scroll;
  }

  function renderChannel() {
    const ch = currentChannel();
    if (!ch) return;
    channelId = ch.id;
    els.channelName.textContent = ch.name;
    els.composer.placeholder = `Message #${ch.name} — try /incident checkout-api is down`;
    document.title = `#${ch.name} · ${state.workspace.name}`;
    els.channels.replaceChildren(...state.channels.map((c) => {
      const li = el("li", "channel-item" + (c.id === channelId ? " active" : ""), `<span class="hash">#</span>${esc(c.name)}`);
      li.setAttribute("data-testid", "channel-item");
      li.addEventListener("click", () => { channelId = c.id; openThread = null; setNav(false); render(); });
      return li;
    }));
    const items = [...ch.messages, ...myEphemerals(null)].sort(byTs);
    els.empty.classList.toggle("hidden", items.length > 0);
    fill(els.messages, items);
    if (!items.length) els.messages.appendChild(els.empty);
  }

  function renderThread() {
    const ch = currentChannel();
    const root = ch && openThread ? ch.messages.find((m) => m.ts === openThread) : null;
    els.thread.classList.toggle("hidden", !root);
    els.app.classList.toggle("thread-open", !!root);
    if (!root) { openThread = null; return; }
    const replies = [...root.replies, ...myEphemerals(root.ts)].sort(byTs);
    const stick = nearBottom(els.threadMessages);
    fill(els.threadMessages, [root], { inThread: true });
    const n = root.replies.length;
    els.threadMessages.appendChild(el("div", "replies-divider", `${n} ${n === 1 ? "reply" : "replies"}`));
    let prev = null;
    for (const m of replies) {
      const compact = prev && !prev.is_ephemeral && !m.is_ephemeral && prev.user === m.user && Math.abs((m.seen_at || 0) - (prev.seen_at || 0)) < 300 && !(m.blocks || []).some((b) => b.type === "header");
      els.threadMessages.appendChild(renderMessage(m, { compact: !!compact, inThread: true }));
      prev = m;
    }
    if (stick) els.threadMessages.scrollTop = els.threadMessages.scrollHeight;
  }

  function showThread(ts) {
    openThread = ts;
    autoOpened.add(ts);
    render();
    els.threadMessages.scrollTop = els.threadMessages.scrollHeight;
    els.threadComposer.focus();
  }

  /* The first time an incident gets a thread, open it: that is where the plan unfolds. */
  function autoOpenThread() {
    if (openThread && !followNext) return;
    const ch = currentChannel();
    const fresh = ch.messages.filter((m) => m.replies.length && !autoOpened.has(m.ts));
    if (followNext && fresh.length) followNext = false;
    if (firstRender) fresh.forEach((m) => autoOpened.add(m.ts)); // on load: only the newest
    if (fresh.length) {
      openThread = fresh[fresh.length - 1].ts;
      autoOpened.add(openThread);
    }
  }

  function renderPersonas() {
    els.personas.replaceChildren(...state.personas.map((p) => {
      const chip = el("button", "chip" + (p.user_id === acting ? " active" : ""));
      chip.type = "button";
      chip.setAttribute("data-testid", `persona-${p.user_id}`);
      chip.dataset.user = p.user_id;
      chip.setAttribute("aria-pressed", p.user_id === acting ? "true" : "false");
      chip.title = `Act as ${p.name} (${p.role_label})`;
      chip.setAttribute("aria-label", `${p.name}, ${p.role_label}`);
      const a = el("span", "avatar", esc(p.name.slice(0, 1).toUpperCase()));
      a.style.background = p.color;
      chip.appendChild(a);
      chip.appendChild(el("span", "chip-text", `<span class="chip-name">${esc(p.name)}</span><span class="chip-role">${esc(p.role_label)}</span>`));
      chip.addEventListener("click", () => setActing(p.user_id));
      return chip;
    }));
  }

  function setActing(userId) {
    acting = userId;
    localStorage.setItem("opsgate.sandbox.as", userId);
    const p = state.personas.find((x) => x.user_id === userId);
    setStatus(`Now acting as ${p.name} (${p.role_label}).`, "info");
    shownView = null;
    render();
    els.composer.focus();
  }

  // ---------------------------------------------------------------- modal

  function renderModal() {
    const views = ((state.views || {})[acting] || []).filter((v) => v.type === "modal");
    const view = views[views.length - 1];
    if (!view) {
      els.overlay.classList.add("hidden");
      shownView = null;
      return;
    }
    const key = `${view.id}:${view.hash}`;
    if (shownView === key) return; // keep what the user typed
    shownView = key;
    els.overlay.classList.remove("hidden");
    els.modalTitle.innerHTML = textObject(view.title);
    els.modalSubmit.textContent = view.submit ? view.submit.text : "Submit";
    els.modalSubmit.classList.toggle("hidden", !view.submit && !(view.blocks || []).some((b) => b.type === "input"));
    els.modalCancel.textContent = view.close ? view.close.text : "Cancel";
    els.modalError.textContent = "";
    els.modalForm.dataset.viewId = view.id;
    els.modalBody.replaceChildren(renderBlocks(view.blocks || [], { message: null }));
    const first = els.modalBody.querySelector("textarea, input");
    if (first) setTimeout(() => first.focus(), 0);
  }

  async function submitModal(ev) {
    ev.preventDefault();
    const viewId = els.modalForm.dataset.viewId;
    const values = {};
    let missing = false;
    for (const wrap of els.modalBody.querySelectorAll(".bk-input")) {
      wrap.classList.remove("invalid");
      wrap.querySelector(".field-error").textContent = "";
    }
    for (const input of els.modalBody.querySelectorAll("[data-action-id]")) {
      const { empty, state: entry } = inputState(input);
      if (empty && !input.dataset.optional) {
        const wrap = input.closest(".bk-input");
        wrap.classList.add("invalid");
        wrap.querySelector(".field-error").textContent =
          input.dataset.type === "checkboxes" ? "Please select at least one option." : "Please fill out this field.";
        missing = true;
      }
      values[input.dataset.blockId] = values[input.dataset.blockId] || {};
      values[input.dataset.blockId][input.dataset.actionId] = entry;
    }
    if (missing) return;
    els.modalSubmit.classList.add("busy");
    els.modalSubmit.disabled = true;
    const res = await act("/sandbox/view_submit", { user: acting, view_id: viewId, values }, `submitted “${els.modalTitle.textContent}”`);
    els.modalSubmit.classList.remove("busy");
    els.modalSubmit.disabled = false;
    if (res && res.errors) {
      for (const [blockId, message] of Object.entries(res.errors)) {
        const wrap = els.modalBody.querySelector(`.bk-input[data-block-id="${CSS.escape(blockId)}"]`);
        if (wrap) { wrap.classList.add("invalid"); wrap.querySelector(".field-error").textContent = message; }
      }
    } else if (res && !res.ok) {
      els.modalError.textContent = res.error || "The app did not accept this submission.";
    }
  }

  async function cancelModal() {
    const viewId = els.modalForm.dataset.viewId;
    els.overlay.classList.add("hidden");
    shownView = null;
    await act("/sandbox/view_close", { user: acting, view_id: viewId }, null);
  }

  // ---------------------------------------------------------------- talking to the sandbox

  function setStatus(text, kind) {
    els.status.textContent = text;
    els.status.className = "status" + (kind ? ` ${kind}` : "");
    els.status.title = text;
  }

  async function act(path, payload, what) {
    let res;
    try {
      const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
      res = await r.json();
    } catch (err) {
      setStatus(`The sandbox did not answer: ${err}`, "error");
      return null;
    }
    if (!res.ok) {
      const who = res.status ? `opsgate answered HTTP ${res.status}` : "opsgate did not answer";
      setStatus(what ? `${what} — ${res.error || who}` : res.error || who, "error");
    } else if (what) {
      const ms = res.ms !== undefined ? ` in ${Math.round(res.ms)} ms` : "";
      setStatus(`${what} — opsgate answered HTTP ${res.status}${ms}`, "ok");
    }
    scheduleRefresh();
    return res;
  }

  async function send(textarea, threadTs) {
    const text = textarea.value.trim();
    if (!text) return;
    textarea.value = "";
    autosize(textarea);
    const what = text.startsWith("/") ? `ran ${text}` : "sent a message";
    if (text.startsWith("/") || /@opsgate\b/.test(text)) {
      followNext = true;
      setTimeout(() => { followNext = false; }, 15000);
    }
    await act("/sandbox/command", { user: acting, channel: channelId, text, thread_ts: threadTs || null }, `${userName(acting)} ${what}`);
  }

  function autosize(t) {
    t.style.height = "auto";
    t.style.height = `${Math.min(t.scrollHeight, 180)}px`;
  }

  function wireComposer(textarea, form, threadTs) {
    textarea.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(textarea, threadTs()); }
    });
    textarea.addEventListener("input", () => autosize(textarea));
    form.addEventListener("submit", (e) => { e.preventDefault(); send(textarea, threadTs()); });
  }

  let refreshTimer = null;
  let refreshing = false;
  let again = false;

  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(refresh, 40);
  }

  async function refresh() {
    refreshTimer = null;
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const r = await fetch(`/sandbox/state?session=${encodeURIComponent(session)}`, { cache: "no-store" });
      state = await r.json();
      if (!acting || !state.personas.some((p) => p.user_id === acting)) acting = state.personas[0].user_id;
      if (!channelId) channelId = state.channel_id;
      render();
    } catch (err) {
      setStatus(`Could not load the workspace: ${err}`, "error");
    } finally {
      refreshing = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }

  function render() {
    if (!state) return;
    renderPersonas();
    channelId = channelId || state.channel_id;
    autoOpenThread();
    renderChannel();
    renderThread();
    renderModal();
    firstRender = false;
  }

  function connect() {
    const source = new EventSource("/sandbox/stream");
    source.onopen = () => { els.conn.dataset.state = "live"; els.conn.querySelector(".conn-text").textContent = "live"; scheduleRefresh(); };
    source.onmessage = () => scheduleRefresh();
    source.onerror = () => { els.conn.dataset.state = "down"; els.conn.querySelector(".conn-text").textContent = "reconnecting…"; };
  }

  /* Narrow screens: the sidebar is a drawer over the page, opened from the top bar. */
  function setNav(open) {
    els.app.classList.toggle("nav-open", open);
    els.scrim.classList.toggle("hidden", !open);
    els.navToggle.setAttribute("aria-expanded", open ? "true" : "false");
  }

  els.navToggle.addEventListener("click", () => setNav(!els.app.classList.contains("nav-open")));
  els.scrim.addEventListener("click", () => setNav(false));
  wireComposer(els.composer, els.composerForm, () => null);
  wireComposer(els.threadComposer, els.threadForm, () => openThread);
  els.threadClose.addEventListener("click", () => { openThread = null; render(); });
  els.modalForm.addEventListener("submit", submitModal);
  els.modalCancel.addEventListener("click", cancelModal);
  els.modalX.addEventListener("click", cancelModal);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && els.app.classList.contains("nav-open")) setNav(false);
    else if (e.key === "Escape" && !els.overlay.classList.contains("hidden")) cancelModal();
    else if (e.key === "Escape" && openThread) { openThread = null; render(); }
  });
  for (const chip of els.personas.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => state && setActing(chip.dataset.user));
  }
  window.opsgateSandbox = { refresh, session, get state() { return state; }, get acting() { return acting; }, mrkdwn };
  refresh().then(connect);
  els.composer.focus();
})();
